"""The options of ``attnrag diagnose`` (light: the command line imports it without torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..distill.config import TeacherConfig
from ..options import option


@dataclass(frozen=True)
class DiagnoseConfig:
    """The options of ``attnrag diagnose``, documented once (the command's flags are generated from
    them). The teacher is the same :class:`TeacherConfig` that training takes, so the check scores
    what distillation would distil."""

    n: int = option(200, help=(
        "questions sampled; give held-out questions (dev), never the reader's own fine-tuning questions"))
    n_passages: int = option(3, help=(
        "K: passages read and candidates the teacher scores (the verdict thresholds were fitted at 3)"))
    signal: str = option("prob", help="indicators: attention signal, prob or norm")
    relatedness: str = option("embedding", help="indicators: passage-token relatedness, embedding or lexical")
    percentile: float = option(95, help="indicators: percentile above which a passage token is related")
    layer: int | None = option(None, help="indicators: hidden-state layer for embedding relatedness")
    batch_size: int = option(4, help="questions per forward pass")
    teacher: TeacherConfig = option(default_factory=TeacherConfig, help="the teacher the check scores")


__all__ = ["DiagnoseConfig"]
