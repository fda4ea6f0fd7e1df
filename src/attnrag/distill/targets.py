"""Distillation targets: what the retriever is taught, one distribution over each question's candidates.

A target and a loss are separate choices (``TrainConfig.target`` / ``TrainConfig.loss``): the
same target can be trained with KL over the question's own K candidates (FiD-KD, ATLAS) or with
the in-batch loss sentence-transformers and DPR use (every passage of the batch in the softmax).
Keeping them apart is what lets one ask whether a teacher wins by its signal or by its loss.

Targets (``TARGETS``):
    ``teacher``: the reader's attention (or any :class:`~attnrag.distill.teacher.Teacher` signal)
        as a soft distribution, ``softmax(scores / tau_gold)`` (FiD-KD, ATLAS).
    ``teacher-top1``: the teacher's favourite candidate as the one positive.
    ``answer``: DPR's answer match (no reader): the highest-ranked candidate whose text holds a gold
        answer is the positive; the other answer-bearing candidates are left out of the softmax
        (they may be right too); questions with none are left out.
    ``answer-gated``: the teacher renormalised over the candidates that hold a gold answer: the
        string match says which passages *can* support the answer, the reader says which of them
        does. Candidates without an answer get probability 0 (they stay negatives). Questions
        where no candidate holds an answer follow ``gate_fallback``: ``teacher`` (the soft teacher
        over all K) or ``drop`` (left out).
    ``gold``: the gold passage (the supervised upper bound; needs labels a user rarely has).

Every target is a :class:`Target` or ``None`` (the question is left out), built from plain lists so
that each can be checked against a hand computation (tests/test_targets.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

TARGETS = ("teacher", "teacher-top1", "answer", "answer-gated", "gold")
#: targets that need the reader's scores (a teacher pass)
TEACHER_TARGETS = ("teacher", "teacher-top1", "answer-gated")
GATE_FALLBACKS = ("teacher", "drop")


@dataclass(frozen=True)
class Target:
    """One question's target: a distribution over its candidates.

    ``candidates``: passage ids in retrieved order (the student's own candidates); ``probs``: the
    target probability of each (sums to 1); ``scores``: the teacher's raw scores of the candidates
    where a teacher made them (EMDR's loss reads them); ``excluded``: passages that are neither
    target nor negative for this question (another answer-bearing candidate under DPR's match),
    left out of the student's softmax wherever they appear in the batch.
    """

    candidates: list[str]
    probs: list[float]
    scores: list[float] | None = None
    excluded: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if len(self.candidates) != len(self.probs) or not self.candidates:
            raise ValueError(f"a target needs one probability per candidate, got {len(self.candidates)} "
                             f"candidates and {len(self.probs)} probabilities")
        if abs(sum(self.probs) - 1.0) > 1e-4:
            raise ValueError(f"target probabilities sum to {sum(self.probs):.6f}, not 1")

    @property
    def favourite(self) -> str:
        """The candidate the target puts most mass on (the first of ties)."""
        return self.candidates[max(range(len(self.probs)), key=lambda i: (self.probs[i], -i))]


def softmax(values: Sequence[float], tau: float) -> list[float]:
    """``softmax(values / tau)``, computed stably in float64."""
    scaled = [v / tau for v in values]
    top = max(scaled)
    exps = [math.exp(s - top) for s in scaled]
    total = sum(exps)
    return [e / total for e in exps]


def one_hot(n: int, at: int) -> list[float]:
    return [1.0 if i == at else 0.0 for i in range(n)]


def teacher_target(candidates: list[str], scores: Sequence[float], tau_gold: float) -> Target:
    """The soft teacher: ``softmax(scores / tau_gold)`` over the candidates."""
    scores = [float(s) for s in scores]
    return Target(list(candidates), softmax(scores, tau_gold), scores)


def teacher_top1_target(candidates: list[str], scores: Sequence[float]) -> Target:
    """The teacher's favourite as the one positive (the first of ties), the rest negatives."""
    scores = [float(s) for s in scores]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return Target(list(candidates), one_hot(len(candidates), best), scores)


def answer_target(candidates: list[str], bearing: Sequence[bool]) -> Target | None:
    """DPR's answer match: the first answer-bearing candidate is the positive, the other
    answer-bearing ones are excluded (dropped from the candidates); ``None`` when none holds one."""
    hits = [c for c, b in zip(candidates, bearing, strict=True) if b]
    if not hits:
        return None
    positive, others = hits[0], frozenset(hits[1:])
    kept = [positive] + [c for c in candidates if c not in others and c != positive]
    return Target(kept, one_hot(len(kept), 0), excluded=others)


def answer_gated_target(candidates: list[str], scores: Sequence[float], bearing: Sequence[bool], tau_gold: float,
                        fallback: str = "teacher") -> Target | None:
    """The teacher renormalised over the answer-bearing candidates (the others get 0).

    ``fallback`` for a question with no answer-bearing candidate: ``teacher`` (the soft teacher over
    all candidates) or ``drop`` (``None``: left out).
    """
    if fallback not in GATE_FALLBACKS:
        raise ValueError(f"gate fallback must be one of {GATE_FALLBACKS}, got {fallback!r}")
    scores = [float(s) for s in scores]
    kept = [i for i, b in enumerate(bearing) if b]
    if not kept:
        return teacher_target(candidates, scores, tau_gold) if fallback == "teacher" else None
    inside = softmax([scores[i] for i in kept], tau_gold)
    probs = [0.0] * len(candidates)
    for i, p in zip(kept, inside, strict=True):
        probs[i] = p
    return Target(list(candidates), probs, scores)


def gold_target(candidates: list[str], gold_ids: Sequence[str], k: int) -> Target | None:
    """The supervised bound: the highest-ranked gold candidate (or the first gold id when none was
    retrieved) is the positive; other gold passages are excluded; ``None`` without gold ids."""
    if not gold_ids:
        return None
    golds = set(gold_ids)
    positive = next((c for c in candidates if c in golds), gold_ids[0])
    kept = [positive] + [c for c in candidates if c not in golds][: k - 1]
    return Target(kept, one_hot(len(kept), 0), excluded=frozenset(golds - {positive}))


def target_stats(targets: Sequence[Target | None], gold_ids: Sequence[Sequence[str]],
                 candidates: Sequence[Sequence[str]], holds_answer: Callable[[int, str], bool]) -> dict:
    """What a row's target knows, per question it keeps: how often its favourite is a gold passage
    (questions with gold ids; also where the gold passage is among the candidates) and holds a gold
    answer (``holds_answer(question index, passage id)``, DPR matching), against the first stage's own
    top candidate on the same questions. The answer-match row's ``favourite_is_gold`` is DPR's
    ``positive_is_gold``."""
    kept = [i for i, t in enumerate(targets) if t is not None]
    out: dict = {"questions": len(targets), "left_out": len(targets) - len(kept)}
    if not kept:
        return out
    labelled = [i for i in kept if gold_ids[i]]
    reachable = [i for i in labelled if set(gold_ids[i]) & set(candidates[i])]

    def share(rows: list[int], hit: Callable[[int], bool]) -> float | None:
        return round(sum(map(hit, rows)) / len(rows), 4) if rows else None

    out.update({
        "favourite_holds_answer": share(kept, lambda i: holds_answer(i, targets[i].favourite)),
        "first_stage_top_holds_answer": share(kept, lambda i: holds_answer(i, candidates[i][0])),
        "labelled": len(labelled),
        "favourite_is_gold": share(labelled, lambda i: targets[i].favourite in set(gold_ids[i])),
        "first_stage_top_is_gold": share(labelled, lambda i: candidates[i][0] in set(gold_ids[i])),
        "gold_among_candidates": share(labelled, lambda i: bool(set(gold_ids[i]) & set(candidates[i]))),
        "favourite_is_gold_where_reachable": share(reachable, lambda i: targets[i].favourite in set(gold_ids[i])),
    })
    return out


__all__ = ["GATE_FALLBACKS", "TARGETS", "TEACHER_TARGETS", "Target", "answer_gated_target", "answer_target",
           "gold_target", "softmax", "target_stats", "teacher_target", "teacher_top1_target"]
