"""A tiny random causal language model, built offline once per test session.

The author's transformers backend must be tested through the same `from_pretrained` call a
user's model goes through, without reaching a hub. `build_tiny_lm()` trains a word-level
tokenizer on a few dozen story lines (so random output reads as random story words), wraps it
as a `PreTrainedTokenizerFast` with pad/eos tokens and, optionally, a small chat template,
builds a 2-layer Llama with hidden size 32, and saves both to a folder. Untrained, the model
writes word salad: exactly what the author's structure repair must survive.

torch and transformers are imported inside the builder (importing torch costs seconds), so
importing this module stays cheap.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a tiny random causal LM whose tokenizer has a chat template."""
    return build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="session")
def tiny_lm_plain(tiny_lm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model with no chat template: the author must fall back to a plain prompt."""
    folder = tmp_path_factory.mktemp("tiny-lm-plain")
    for item in tiny_lm.iterdir():
        if item.name != "chat_template.jinja":
            shutil.copy(item, folder / item.name)
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    data.pop("chat_template", None)
    config.write_text(json.dumps(data), encoding="utf-8")
    return folder
