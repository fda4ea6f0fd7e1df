"""Builders for tiny random-weight models and a small world, shared by the tests.

The tiny models use the real tokenizers of the default models (from the model cache that
``make setup`` fills), so prompts, spans and special tokens are exercised exactly as in real runs,
at a fraction of the cost.
"""

from __future__ import annotations

from pathlib import Path

import torch

from attnrag.models import model_dir

SMOL = model_dir("smollm2-135m-instruct")
MINILM = model_dir("minilm-l6-v2")


def tiny_llama(seed: int = 0, layers: int = 3, heads: int = 6, kv_heads: int = 2):
    """A 3-layer Llama with grouped-query attention (6 query heads, 2 key/value heads)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(SMOL)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, head_dim=16, intermediate_size=128,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                         max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval(), tokenizer


def tiny_reader(seed: int = 0, **kwargs):
    from attnrag.reader.decoder import DecoderReader

    model, tokenizer = tiny_llama(seed, **kwargs)
    return DecoderReader(model, tokenizer)


def save_tiny_reader(path: Path, seed: int = 0) -> Path:
    reader = tiny_reader(seed)
    reader.save(path)
    return path


def save_tiny_bert(path: Path, seed: int = 0) -> Path:
    """A 2-layer BERT with the MiniLM tokenizer, saved as a Hugging Face directory."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def small_world(path: Path, seed: int = 0) -> Path:
    from attnrag.data.synth import generate_world, write_world

    write_world(generate_world(seed=seed, size="small"), path)
    return path
