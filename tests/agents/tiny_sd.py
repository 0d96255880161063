"""Tiny random Stable Diffusion pipelines, built offline once per test session.

The illustrator's diffusers backend must be tested through the same `from_pretrained` call a
user's model goes through, without reaching a hub. These fixtures build a real
`StableDiffusionPipeline` from tiny randomly initialised components (UNet, VAE with 8x
downsampling like real SD, CLIP text encoder, a byte-level CLIP tokenizer, DDIM scheduler),
save it to a temporary folder and hand back the folder. A second variant ships a real (tiny)
`StableDiffusionSafetyChecker` whose concept thresholds flag every image, so the NSFW path is
exercised end to end.

torch and diffusers are imported inside the builders, so importing this module stays cheap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

TEXT_DIM = 32  # CLIP hidden size == UNet cross-attention size


def _bytes_to_unicode() -> dict[int, str]:
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


def write_tokenizer(folder: Path) -> int:
    """Write a byte-level CLIP vocab + a few merges into `folder`; return the vocab size.

    transformers 5 ignores `CLIPTokenizer(vocab_file=..., merges_file=...)`, so the files are
    written to a folder and the tokenizer is loaded from there.
    """
    symbols = list(_bytes_to_unicode().values())
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
    vocab_size = write_tokenizer(work / "tok")
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
        pipe = pipeline_cls(**parts, safety_checker=checker,
                                       feature_extractor=processor)
    else:
        pipe = pipeline_cls(**parts, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    target = folder / "pipeline"
    pipe.save_pretrained(str(target))
    return target


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny SD pipeline without a safety checker."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_sd_flagging(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny SD pipeline whose (real, tiny) safety checker flags every image."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd_nsfw"), with_safety_checker=True)
