"""Load the right reader for a model: Fusion-in-Decoder for encoder-decoders, decoder-only otherwise.

Everywhere a reader is loaded by name or directory (the trainer, QA evaluation, the analysis), the
model's ``config.json`` decides: ``is_encoder_decoder`` -> :class:`~attnrag.reader.fid.FiDReader`,
else :class:`~attnrag.reader.decoder.DecoderReader`. Both take the same ``prompt`` argument (a FiD
reader keeps only the token budgets of a decoder-only :class:`~attnrag.reader.prompt.PromptConfig`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..models import resolve_model
from .protocol import Reader


def is_encoder_decoder(name_or_path: str | Path) -> bool:
    """Whether the model's config says it is an encoder-decoder (reads ``config.json`` only)."""
    from transformers import AutoConfig

    return bool(getattr(AutoConfig.from_pretrained(resolve_model(name_or_path)), "is_encoder_decoder", False))


def reader_kind(name_or_path: str | Path) -> str:
    """``"fid"`` or ``"decoder"``."""
    return "fid" if is_encoder_decoder(name_or_path) else "decoder"


def load_reader(name_or_path: str | Path, prompt=None, device: str | None = None,
                dtype: torch.dtype = torch.float32, precision: str = "auto") -> Reader:
    """A :class:`FiDReader` when the model is an encoder-decoder, else a :class:`DecoderReader`."""
    if is_encoder_decoder(name_or_path):
        from .fid import FiDReader

        return FiDReader.from_pretrained(name_or_path, prompt=prompt, device=device, dtype=dtype, precision=precision)
    from .decoder import DecoderReader

    return DecoderReader.from_pretrained(name_or_path, prompt=prompt, device=device, dtype=dtype,
                                         precision=precision)


__all__ = ["Reader", "is_encoder_decoder", "load_reader", "reader_kind"]
