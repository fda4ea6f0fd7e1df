"""The teacher's options (torch-free, so the command line can read them without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import option

ATTENTION_TEACHERS = {"attn": "prob", "attn-norm": "norm", "attn-logits": "logits"}
LIKELIHOOD_TEACHERS = ("pdist", "loop", "emdr")
TEACHERS = tuple(ATTENTION_TEACHERS) + LIKELIHOOD_TEACHERS
AGGREGATIONS = ("sum", "mean", "topk")

#: each teacher's own temperature, ``softmax(scores / tau)`` over a question's candidates. The signals
#: live on scales orders of magnitude apart (value-weighted attention sums, attention probabilities,
#: pre-softmax logits, answer log-likelihoods in nats), so one temperature for all compares
#: temperatures as much as signals. attn-norm keeps the 0.01 every teacher shared before; each other
#: teacher's is 0.01 x its typical score spread / attn-norm's (the median over questions of the
#: standard deviation of its scores across the question's candidates), measured without labels by
#: scripts/teacher_scales.py from the quick grid's teacher caches (docs/results/teacher-tau/grid/,
#: where the grid's teacher rows were re-run with them). emdr's loss uses the log-likelihoods
#: themselves, so its value only shapes the logged target. ``TrainConfig.tau_gold`` overrides it.
TEACHER_TAU = {"attn-norm": 0.01, "attn": 0.00119, "attn-logits": 1.1, "pdist": 0.101, "loop": 0.483, "emdr": 0.506}


@dataclass
class TeacherConfig:
    """How the reader's signal becomes a score per passage (each field documents itself)."""

    teacher: str = option("attn-norm", help=(
        "attn-norm (attention x value norm), attn (probabilities), attn-logits (pre-softmax logits), pdist "
        "(answer log-likelihood given each passage alone), loop (leave-one-out: drop in answer log-likelihood "
        "without the passage) or emdr (EMDR2: per-passage likelihoods trained with its own loss)"))
    aggregation: str = option("sum", help=(
        "attention teachers: how a passage's token scores become one score: sum, mean, or topk (sum of the "
        "topk_tokens highest)"))
    first_token_only: bool = option(False, help="attention teachers: only the query that predicts the first answer token")
    topk_tokens: int = option(5, help="k of the topk aggregation")
    shuffle_orders: int = option(0, help=(
        "random passage orders to average the teacher over (0: the retrieved order); counters the position "
        "bias of decoder-only readers"))
    seed: int = option(0, help="seed of the passage-order shuffles")

    def __post_init__(self) -> None:
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {TEACHERS}, got {self.teacher!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {self.aggregation!r}")
        if not isinstance(self.topk_tokens, int) or self.topk_tokens < 1:
            raise ValueError(f"topk_tokens must be an integer >= 1, got {self.topk_tokens!r}")


__all__ = ["AGGREGATIONS", "ATTENTION_TEACHERS", "LIKELIHOOD_TEACHERS", "TEACHERS", "TEACHER_TAU", "TeacherConfig"]
