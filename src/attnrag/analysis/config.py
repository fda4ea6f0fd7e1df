"""The options of ``attnrag analyze`` and ``attnrag diagnose``, documented once (light: the command
line imports them without torch and generates its flags from them)."""

from __future__ import annotations

from dataclasses import dataclass

from ..distill.config import TeacherConfig
from ..options import option


@dataclass(frozen=True)
class IndicatorOptions:
    """How the paper's indicators are measured: shared by ``analyze`` and ``diagnose`` (one definition)."""

    signal: str = option("prob", help="indicators: attention signal, prob (attention probabilities) or norm "
                                      "(value-weighted)")
    relatedness: str = option("embedding", help=(
        "indicators: how answer- and question-related passage tokens are found, embedding or lexical"))
    percentile: float = option(95, help="indicators: percentile above which a passage token counts as related")
    layer: int | None = option(None, help="indicators: hidden-state layer for embedding relatedness (null: the default)")
    batch_size: int = option(4, help="questions per forward pass")


@dataclass(frozen=True)
class AnalyzeConfig(IndicatorOptions):
    """The options of ``attnrag analyze`` (:func:`attnrag.analysis.analyze.analyze`)."""

    n: int = option(1000, help="questions to analyse (the first N with a non-empty answer)")
    n_passages: int = option(5, help="K passages each run's retriever returns and its reader reads")
    example: int = option(0, help="the question shown in example.html")


@dataclass(frozen=True)
class PilotConfig:
    """The pilot's own budget (the rest of the run, teacher and tower included, is a TrainConfig)."""

    questions: int = option(64, help="training questions the teacher scores in the pilot")
    steps: int = option(30, help="distillation steps of the pilot")
    batch_size: int | None = option(None, help=(
        "questions per pilot step (the in-run pilot's pilot_batch_size; null: the run's distill_batch_size for "
        "a query tower, 8 for a tied tower)"))
    dev_questions: int = option(300, help="dev questions the retrievers before and after are compared on")
    margin: float = option(0.0, help="answer recall@1 change the interval must clear to call the pilot a gain")
    targets: tuple[str, ...] = option(("teacher", "answer"), help=(
        "targets piloted, each on its own copy of the retriever (TrainConfig.target: teacher, teacher-top1, "
        "answer-gated, answer); the first is the verdict's, the best on dev is recommended"))


@dataclass(frozen=True)
class DiagnoseConfig(IndicatorOptions):
    """The options of ``attnrag diagnose``, documented once (the command's flags are generated from
    them). The teacher is the same :class:`TeacherConfig` that training takes, so the check scores
    what distillation would distil."""

    n: int = option(200, help=(
        "questions sampled; give held-out questions (dev), never the reader's own fine-tuning questions"))
    n_passages: int = option(3, help=(
        "K: passages read and candidates the teacher scores (the verdict thresholds were fitted at 3)"))
    teacher: TeacherConfig = option(default_factory=TeacherConfig, help="the teacher the check scores")
    pilot: PilotConfig = option(default_factory=PilotConfig, help="the pilot's budget (with --pilot)")


__all__ = ["AnalyzeConfig", "DiagnoseConfig", "IndicatorOptions", "PilotConfig"]
