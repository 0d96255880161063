"""Tiny random models, built offline, for tests and benchmarks.

The author's transformers backend and the illustrator's diffusers backend must be exercised
through the same `from_pretrained` call a user's model goes through, without reaching a hub:
- `build_tiny_lm(folder)`: a word-level tokenizer trained on a few dozen story lines (so
  random output reads as random story words), wrapped as a `PreTrainedTokenizerFast` with
  pad/eos tokens and, optionally, a small chat template, and a 2-layer Llama with hidden size
  32. Untrained, the model writes word salad: exactly what the author's structure repair must
  survive.
- `build_tiny_sd(folder)`: a real `StableDiffusionPipeline` from tiny randomly initialised
  components (UNet, VAE with 8x downsampling like real SD, CLIP text encoder, a byte-level
  CLIP tokenizer from `write_clip_tokenizer`, DDIM scheduler); optionally with a real (tiny)
  `StableDiffusionSafetyChecker` whose thresholds flag every image, so the NSFW path runs.

No pytest here: benchmarks/agents.py imports this module on GPU boxes without it (the
session fixtures live in tests/conftest.py). torch, transformers and diffusers are imported
inside the builders (importing torch costs seconds), so importing this module stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TEXT_DIM = 32  # CLIP hidden size == UNet cross-attention size

# --- a tiny causal language model --------------------------------------------------------

LINES = (
    "Title: The Brave Little Fox",
    "Hero: Pip - a small orange fox with a red scarf.",
    "Friend: Hazel - a wise brown owl with round glasses.",
    "Chapter 1: The Forest - Pip lives in the forest and dreams of the moon.",
    "Chapter 2: The River - Pip cannot cross the river alone.",
    "Chapter 3: Home Again - Pip and Hazel come home at last.",
    "Once upon a time a little fox lived in the green forest.",
    "The fox was shy, but the fox was kind.",
    "Every morning the sun rose over the hills and the birds sang.",
    "One day the wind blew and the rain fell on the village.",
    "Pip said: I will find the lost star.",
    "The owl smiled and said: friends help each other.",
    "They walked and walked until they came to a wide river.",
    "The water was cold. The stones were slippery. Pip was afraid.",
    "Together they crossed the river, one hop at a time.",
    "At night the stars were bright and the moon was round.",
    "The dragon flew over the castle and the sea.",
    "A girl and her robot played in the garden.",
    "They laughed. They danced. They were happy.",
    "The end.",
    "Write chapter 1 of 3. Readers: children aged 4 to 7.",
    "You are a warm children's book author.",
    "Plot: Themes: friendship, courage, kindness.",
)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL = ["[UNK]", "[PAD]", "[BOS]", "[EOS]", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tiny_lm(folder: Path, *, chat_template: bool = True) -> Path:
    """Save a tiny random Llama and its word-level tokenizer to `folder`; return it."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    raw = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    raw.decoder = decoders.WordPiece(prefix="##")  # joins words with single spaces
    raw.train_from_iterator(LINES, trainers.WordLevelTrainer(special_tokens=SPECIAL))
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=raw, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
        eos_token="[EOS]")
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=2048,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    model.save_pretrained(folder)
    return folder


# --- a tiny Stable Diffusion pipeline ------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable-character map."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def write_clip_tokenizer(folder: Path) -> int:
    """Write a byte-level CLIP vocab + a few merges into `folder`; return the vocab size.

    transformers 5 ignores `CLIPTokenizer(vocab_file=..., merges_file=...)`, so the files are
    written to a folder and the tokenizer is loaded from there.
    """
    symbols = list(bytes_to_unicode().values())
    merges = [("t", "h"), ("th", "e</w>"), ("o", "u"), ("a", "n"), ("e", "r</w>")]
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(tokens))}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    merge_lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(merge_lines) + "\n", encoding="utf-8")
    return len(vocab)


def _components(work: Path) -> dict[str, Any]:
    import diffusers
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    d: Any = diffusers  # only partly typed

    torch.manual_seed(0)
    vocab_size = write_clip_tokenizer(work / "tok")
    # model_max_length travels with the saved pipeline; without it padding overflows.
    tokenizer = CLIPTokenizer.from_pretrained(str(work / "tok"), model_max_length=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=37, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=TEXT_DIM,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ))
    unet = d.UNet2DConditionModel(
        block_out_channels=(16, 32), layers_per_block=1, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=TEXT_DIM,
        attention_head_dim=4, norm_num_groups=8,
    )
    # Four encoder blocks = 8x downsampling, like real SD (vae_scale_factor 8).
    vae = d.AutoencoderKL(
        block_out_channels=(8, 8, 16, 16), in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=4, sample_size=128,
    )
    # DDIM: PNDM's warm-up steps crash at 2 inference steps.
    scheduler = d.DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    return {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer,
            "scheduler": scheduler}


def _flag_everything_checker() -> tuple[Any, Any]:
    """A real, tiny safety checker whose thresholds flag every image, and its processor."""
    import torch
    from diffusers.pipelines.stable_diffusion import safety_checker
    from transformers import CLIPConfig, CLIPImageProcessor

    checker_cls: Any = safety_checker.StableDiffusionSafetyChecker

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 99},
        vision_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    checker = checker_cls(config).eval()
    with torch.no_grad():
        # A cosine similarity is >= -1, so a threshold of -2 marks every concept present.
        checker.concept_embeds_weights.fill_(-2.0)
        checker.special_care_embeds_weights.fill_(-2.0)
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32,
                                                                          "width": 32})
    return checker, processor


def build_tiny_sd(folder: Path, *, with_safety_checker: bool = False) -> Path:
    """Build a tiny random SD pipeline and `save_pretrained` it into `folder/pipeline`."""
    import diffusers

    pipeline_cls: Any = diffusers.StableDiffusionPipeline
    parts = _components(folder / "work")
    if with_safety_checker:
        checker, processor = _flag_everything_checker()
        pipe = pipeline_cls(**parts, safety_checker=checker, feature_extractor=processor)
    else:
        pipe = pipeline_cls(**parts, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False)
    target = folder / "pipeline"
    pipe.save_pretrained(str(target))
    return target
