"""The options of ``attnrag evaluate qa``, documented once (torch-free: the command line generates
its flags from these fields without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option


@dataclass(frozen=True)
class QAEvalConfig:
    """How ``evaluate qa`` reads and scores: passages read, recall cut-offs, generation batch."""

    n_passages: int = option(5, help="passages the reader reads")
    k: str = option("1,5,10", help="recall cut-offs, comma-separated")
    batch_size: int = option(8, help="generation batch size")
    limit: int | None = option(None, help="evaluate the first N questions (null: all)")


__all__ = ["QAEvalConfig"]
