"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest


# ---------------------------------------------------------------- retrieval: a tiny random BERT
@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-dim random BERT with the real MiniLM tokenizer: fast, but tokenises like the real one."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from attnrag.models import model_dir

    source = model_dir("minilm-l6-v2")
    if not (source / "tokenizer.json").is_file():
        pytest.skip("minilm-l6-v2 is not provisioned (run `attnrag models fetch minilm-l6-v2`)")
    out = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(source)
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
    )
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
