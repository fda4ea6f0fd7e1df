"""What every reader offers the rest of attnrag: the :class:`Reader` protocol.

Two readers implement it: :class:`~attnrag.reader.decoder.DecoderReader` (any causal LM; the teacher is
the attention the answer tokens pay to the prompt) and :class:`~attnrag.reader.fid.FiDReader`
(Fusion-in-Decoder; the decoder's cross-attention over the concatenated passage encodings). The
trainer, the teachers and the evaluation use only these members, so a third reader (a new
architecture family) needs only to implement them, and nothing above ``reader/`` tells readers apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from ..data.records import Passage


@runtime_checkable
class Reader(Protocol):
    """A reader of retrieved passages that can be trained, scored as a teacher and asked for answers.

    Attributes:
        model: the underlying ``torch.nn.Module`` (the trainer switches train/eval and checkpoints it).
        tokenizer: its tokenizer (the analysis reads token strings through it).
        name: where it came from (registry name or directory), for reports.
    """

    model: torch.nn.Module
    tokenizer: Any
    name: str

    @property
    def device(self) -> torch.device:
        """Where the model's parameters live; batches are built there."""
        ...

    @property
    def num_layers(self) -> int:
        """The attention layers the teacher's scores are averaged over."""
        ...

    def batch(self, questions: list[str], passages: list[list[Passage]], answers: list[str] | None = None,
              with_labels: bool = False) -> Any:
        """Tokenise ``(question, passages[, answer])`` rows into a padded batch on :attr:`device`;
        ``with_labels`` marks the answer tokens as the loss targets."""
        ...

    def loss(self, batch: Any, capture: Any = None) -> torch.Tensor:
        """Mean token cross-entropy of the answers (the reader's training loss)."""
        ...

    def answer_logprobs(self, batch: Any) -> torch.Tensor:
        """Per-row sum of the answer tokens' log-probabilities ``[B]`` (the pdist / loop / EMDR teachers)."""
        ...

    def capture_token_attention(self, batch: Any, signal: str = "norm", first_token_only: bool = False
                                ) -> torch.Tensor:
        """``[B, L]`` attention each input token receives from the answer tokens (the attention teacher)."""
        ...

    def generate(self, questions: list[str], passages: list[list[Passage]], max_new_tokens: int = 16,
                 batch_size: int = 8, progress: bool = False) -> list[str]:
        """Greedy short answers, one per question."""
        ...

    def trainable_parameters(self, top_layers: int | None = None) -> list[torch.nn.Parameter]:
        """Unfreeze the top ``top_layers`` blocks (all when ``None``) and return what the optimiser trains."""
        ...

    def save(self, out_dir: str | Path) -> None:
        """Write a directory :func:`~attnrag.reader.factory.load_reader` loads back (atomically)."""
        ...


__all__ = ["Reader"]
