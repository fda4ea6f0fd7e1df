"""The retriever: a Contriever-style bi-encoder (mean-pooled token states, dot-product score).

Two towers share one module by default ("tied"). Query-side-only distillation needs a passage tower
that does *not* move while the query tower trains, otherwise the index goes stale silently; ATLAS
got this wrong by "freezing" a tower that still shared its weights. :meth:`BiEncoder.untie` therefore
makes a real deep copy and freezes it.

Inference (``encode_*``) sorts texts by length so each batch pads little, runs under
``torch.inference_mode`` in eval mode, and restores the original order. Training uses the
differentiable ``embed_*`` methods instead.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.records import Passage
from ..errors import InputError, ModelNotFoundError
from ..io import atomic_dir
from ..models import resolve_model

CONFIG_NAME = "attnrag_encoder.json"
PASSAGE_SUBDIR = "passage_encoder"
_CHUNK_BATCHES = 32  # batches tokenised together: one Rust call, then re-sorted by exact token length


def passage_to_text(passage: Passage | str) -> str:
    """The one place that decides what the passage tower sees: ``"{title} | {text}"``."""
    if isinstance(passage, str):
        return passage
    return f"{passage.title} | {passage.text}" if passage.title else passage.text


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average the token states that the attention mask keeps (padding must not dilute the mean)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class BiEncoder(nn.Module):
    """Query and passage towers over any Hugging Face encoder; ``score = q . p``."""

    def __init__(
        self,
        query_encoder: nn.Module,
        tokenizer,
        passage_encoder: nn.Module | None = None,
        *,
        query_max_length: int = 64,
        passage_max_length: int = 128,
        name: str | None = None,
    ) -> None:
        super().__init__()
        self.query_encoder = query_encoder
        # Registered only when untied, so a tied model has one copy of each weight in its state dict.
        self.separate_passage_encoder = passage_encoder
        self.tokenizer = tokenizer
        self.query_max_length = query_max_length
        self.passage_max_length = passage_max_length
        self.name = name

    # ---------------------------------------------------------------- construction / persistence
    @classmethod
    def from_pretrained(
        cls, name_or_path: str | Path, device: str | torch.device | None = None, **kwargs
    ) -> BiEncoder:
        """Load a registry name, a Hugging Face directory, or a directory written by :meth:`save`."""
        path = resolve_model(name_or_path)
        if (path / CONFIG_NAME).is_file():
            return cls.load(path, device=device)
        from transformers import AutoModel, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
        enc = cls(model, tokenizer, name=str(name_or_path), **kwargs)
        return enc.to(device or default_device()).eval()

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> BiEncoder:
        """Restore every weight of both towers, the tie state and the max lengths."""
        from transformers import AutoModel, AutoTokenizer

        directory = Path(directory)
        cfg_path = directory / CONFIG_NAME
        if not cfg_path.is_file():
            if (directory / "config.json").is_file():
                return cls.from_pretrained(directory, device=device)
            raise ModelNotFoundError(f"{directory} holds no saved encoder ({CONFIG_NAME} missing)")
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        tokenizer = AutoTokenizer.from_pretrained(directory)
        query = AutoModel.from_pretrained(directory)
        passage = None
        if not cfg["tied"]:
            passage = AutoModel.from_pretrained(directory / PASSAGE_SUBDIR)
            if cfg.get("passage_frozen", True):
                passage.requires_grad_(False)
        enc = cls(
            query,
            tokenizer,
            passage,
            query_max_length=cfg["query_max_length"],
            passage_max_length=cfg["passage_max_length"],
            name=str(directory),  # the weights live here now, whatever they started from
        )
        return enc.to(device or default_device()).eval()

    def save(self, directory: str | Path) -> Path:
        """Write an HF-loadable query tower at the root (+ ``passage_encoder/`` when untied), atomically."""
        with atomic_dir(directory) as tmp:
            self.query_encoder.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            if not self.tied:
                self.separate_passage_encoder.save_pretrained(tmp / PASSAGE_SUBDIR)
            cfg = {
                "tied": self.tied,
                "passage_frozen": self.passage_frozen,
                "query_max_length": self.query_max_length,
                "passage_max_length": self.passage_max_length,
                "source_name": self.name,
                "pooling": "mean",
                "score": "dot",
            }
            (tmp / CONFIG_NAME).write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        return Path(directory)

    # ---------------------------------------------------------------- towers
    @property
    def passage_encoder(self) -> nn.Module:
        return self.query_encoder if self.separate_passage_encoder is None else self.separate_passage_encoder

    @property
    def tied(self) -> bool:
        return self.separate_passage_encoder is None

    @property
    def passage_frozen(self) -> bool:
        return not self.tied and not any(p.requires_grad for p in self.separate_passage_encoder.parameters())

    def untie(self, freeze: bool = True) -> BiEncoder:
        """Give the passage tower its own deep-copied weights (frozen by default) so query training
        leaves passage embeddings, and hence the index, unchanged."""
        if self.tied:
            self.separate_passage_encoder = copy.deepcopy(self.query_encoder)
        if freeze:
            self.separate_passage_encoder.requires_grad_(False)
            self.separate_passage_encoder.eval()
        return self

    def train(self, mode: bool = True) -> BiEncoder:
        """Like ``nn.Module.train``, but a frozen passage tower stays in eval mode (no dropout)."""
        super().train(mode)
        if self.passage_frozen:
            self.separate_passage_encoder.eval()
        return self

    @property
    def dim(self) -> int:
        return int(self.query_encoder.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.query_encoder.parameters()).device

    # ---------------------------------------------------------------- differentiable paths
    def _tokenize(self, texts: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {
            "input_ids": batch["input_ids"].to(self.device),
            "attention_mask": batch["attention_mask"].to(self.device),
        }

    def _embed(self, tower: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def embed_queries(self, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor:
        """Query embeddings with autograd on (training); the caller decides train/eval mode."""
        _check_texts(texts)
        batch = self._tokenize(texts, max_length or self.query_max_length)
        return self._embed(self.query_encoder, **batch)

    def embed_passages(
        self, passages: Sequence[Passage | str], max_length: int | None = None
    ) -> torch.Tensor:
        """Passage embeddings with autograd (gradients reach weights only if the tower is not frozen)."""
        _check_texts(passages)
        batch = self._tokenize([passage_to_text(p) for p in passages], max_length or self.passage_max_length)
        return self._embed(self.passage_encoder, **batch)

    @staticmethod
    def score(query_emb: torch.Tensor, passage_emb: torch.Tensor) -> torch.Tensor:
        """Dot product, ``[n_q, d] x [n_p, d] -> [n_q, n_p]``."""
        return query_emb @ passage_emb.T

    # ---------------------------------------------------------------- fast inference
    def encode_queries(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        max_length: int | None = None,
        progress: bool = False,
    ) -> torch.Tensor:
        """Query embeddings for search, ``float32 [n, dim]`` on CPU, no gradient."""
        _check_texts(texts)
        out = self._encode(
            self.query_encoder, list(texts), batch_size, max_length or self.query_max_length, progress
        )
        return torch.from_numpy(out)

    def encode_passages(
        self,
        passages: Sequence[Passage | str],
        batch_size: int = 64,
        max_length: int | None = None,
        progress: bool = True,
    ) -> np.ndarray:
        """Passage embeddings for indexing, ``np.float32 [n, dim]`` in input order."""
        _check_texts(passages)
        texts = [passage_to_text(p) for p in passages]
        return self._encode(
            self.passage_encoder, texts, batch_size, max_length or self.passage_max_length, progress
        )

    def _encode(
        self, tower: nn.Module, texts: list[str], batch_size: int, max_length: int, progress: bool
    ) -> np.ndarray:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # Coarse global sort by characters (cheap); each chunk is then re-sorted by exact token count.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        pad_id = self.tokenizer.pad_token_id or 0
        was_training = tower.training
        tower.eval()
        chunk = batch_size * _CHUNK_BATCHES
        try:
            with (
                torch.inference_mode(),
                tqdm(total=len(texts), disable=not progress, unit="text", desc="encode") as bar,
            ):
                for start in range(0, len(order), chunk):
                    idx = order[start : start + chunk]
                    ids = self.tokenizer(
                        [texts[i] for i in idx],
                        truncation=True,
                        max_length=max_length,
                        add_special_tokens=True,
                    )["input_ids"]
                    local = sorted(range(len(idx)), key=lambda j: -len(ids[j]))
                    for b in range(0, len(local), batch_size):
                        rows = local[b : b + batch_size]
                        input_ids, mask = _pad([ids[j] for j in rows], pad_id)
                        emb = self._embed(tower, input_ids.to(self.device), mask.to(self.device))
                        out[[idx[j] for j in rows]] = emb.float().cpu().numpy()
                        bar.update(len(rows))
        finally:
            tower.train(was_training)
        return out


def _pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists into ``(input_ids, attention_mask)`` int64 tensors."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, : len(s)] = s
        mask[r, : len(s)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def _check_texts(texts: Sequence) -> None:
    if isinstance(texts, (str, Passage)):
        raise InputError("expected a list of texts, got a single item; wrap it in a list")
