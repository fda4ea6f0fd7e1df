"""The teacher check: does the reader's teacher pick the gold passage more often than the retriever?

A teacher clearly below its student pulled the student down in every run measured here
(docs/analysis.md, the teacher check), so the trainer logs this for every distillation and
``attnrag diagnose`` compares the two before any training. It also records at which retrieved rank
the teacher's favourite sits: a strong preference for one position is a bias between passages that
averaging the teacher over shuffled passage orders (``TeacherConfig.shuffle_orders``) removes.

Gold passage ids are what most users do not have, so :func:`answer_teacher_accuracy` asks the same
question with answers only: is the teacher's favourite an answer-bearing passage more often than the
first stage's top passage? Both report the paired difference with an interval
(:func:`paired_difference`), not one side's rate with an unpaired margin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..data.records import Passage, QAExample
from .metrics import dpr_tokens, tokens_have_answer

#: the normal quantile of the paired intervals (95%, two-sided)
Z95 = 1.959963984540054


def paired_difference(teacher_hits: Sequence[bool], first_stage_hits: Sequence[bool]) -> dict:
    """Mean of ``teacher - first stage`` over the same questions, with a 95% normal interval.

    Paired: each question contributes its own difference (-1, 0 or +1), so the interval is on the
    difference itself, which is narrower and honest where an unpaired margin on one side's rate is not.
    ``teacher_only`` / ``first_stage_only`` count the questions only one of them got right.
    """
    if len(teacher_hits) != len(first_stage_hits):
        raise ValueError(f"paired_difference needs the same questions: {len(teacher_hits)} vs {len(first_stage_hits)}")
    n = len(teacher_hits)
    d = [int(bool(t)) - int(bool(r)) for t, r in zip(teacher_hits, first_stage_hits, strict=True)]
    if not n:
        return {"difference": None, "low": None, "high": None, "n": 0, "teacher_only": 0, "first_stage_only": 0}
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / (n - 1) if n > 1 else 0.0
    half = Z95 * math.sqrt(var / n)
    return {"difference": mean, "low": mean - half, "high": mean + half, "n": n,
            "teacher_only": sum(x > 0 for x in d), "first_stage_only": sum(x < 0 for x in d)}


def favourites(scores: torch.Tensor) -> list[int | None]:
    """Each row's top candidate; ``None`` for a row whose scores are all equal (no favourite)."""
    if not len(scores):
        return []
    flat = [bool((row == row[0]).all()) for row in scores]
    return [None if f else int(t) for f, t in zip(flat, scores.argmax(-1).tolist(), strict=True)]


def answer_teacher_accuracy(scores: torch.Tensor, candidates: Sequence[Sequence[Passage]],
                            examples: Sequence[QAExample]) -> dict:
    """The label-free teacher check: how often the teacher's favourite contains a gold *answer* (DPR
    matching), against how often the first stage's top passage does, paired, with an interval.

    Needs only questions with answers, which distillation needs anyway, not gold passage ids. Only
    questions where some but not all candidates contain an answer count (``informative``): where all or
    none do, no teacher can be told from the first stage (and a short answer matches everywhere).
    ``candidates`` are in the first stage's order (rank 0 first). A row with no favourite is a miss.
    """
    if not (len(scores) == len(candidates) == len(examples)):
        raise ValueError(f"answer_teacher_accuracy needs one row per question: {len(scores)} score rows, "
                         f"{len(candidates)} candidate lists, {len(examples)} questions")
    top = favourites(scores)
    teacher_hits: list[bool] = []
    first_hits: list[bool] = []
    with_answers = 0
    for row_top, cands, ex in zip(top, candidates, examples, strict=True):
        answers = [dpr_tokens(a) for a in ex.answers]
        if not any(answers):
            continue
        with_answers += 1
        bearing = [tokens_have_answer(dpr_tokens(p.text), answers) for p in cands]
        if all(bearing) or not any(bearing):
            continue
        teacher_hits.append(row_top is not None and bearing[row_top])
        first_hits.append(bearing[0])
    n = len(teacher_hits)
    return {
        "teacher_top1_answer": sum(teacher_hits) / n if n else None,
        "first_stage_top1_answer": sum(first_hits) / n if n else None,
        "paired": paired_difference(teacher_hits, first_hits),
        "informative": n,
        "questions_with_answers": with_answers,
    }


def teacher_accuracy(scores: torch.Tensor, candidate_ids: list[list[str]], examples: list[QAExample]) -> dict:
    """How often the teacher's top passage is a gold passage (overall, and when a gold was retrieved).

    Rates are over the questions with gold passage ids (``questions``; ``questions_without_gold`` are
    not counted). A row whose scores are all equal (an empty generated answer leaves zeros) has no
    favourite: it counts as a miss, never as agreeing with the retriever's first passage, and is left
    out of the rank shares (``flat_rows`` says how many).
    """
    if not (len(scores) == len(candidate_ids) == len(examples)):
        raise ValueError(f"teacher_accuracy needs one row per question: {len(scores)} score rows, "
                         f"{len(candidate_ids)} candidate lists, {len(examples)} questions")
    top = favourites(scores)
    hits = reachable = labelled = retriever_hits = 0
    teacher_hits: list[bool] = []
    first_hits: list[bool] = []
    for row_top, ids, ex in zip(top, candidate_ids, examples, strict=True):
        gold = set(ex.gold_passage_ids)
        if not gold:
            continue
        labelled += 1
        teacher_hits.append(row_top is not None and ids[row_top] in gold)
        first_hits.append(ids[0] in gold)
        if gold & set(ids):
            reachable += 1
            hits += row_top is not None and ids[row_top] in gold
            retriever_hits += ids[0] in gold  # candidates are in the retriever's order
    # where the teacher's favourite sits in the retrieved order: a teacher that prefers one position
    # (Gemma 3's last passage, docs/results/gemma3) fails between passages where the indicators look fine
    k = max((len(ids) for ids in candidate_ids), default=0)
    ranks = [0] * k
    for row_top in top:
        if row_top is not None and row_top < k:
            ranks[row_top] += 1
    with_favourite = sum(t is not None for t in top)
    return {
        "teacher_top1_gold": hits / labelled if labelled else None,
        # the student's own accuracy on the same questions: a teacher clearly below it has pulled it down in
        # every run measured here (docs/analysis.md, the teacher check)
        "retriever_top1_gold": retriever_hits / labelled if labelled else None,
        "teacher_top1_gold_when_retrieved": hits / reachable if reachable else None,
        "candidates_contain_gold": reachable / labelled if labelled else None,
        # teacher minus retriever top-1 gold on the same questions, with its 95% interval
        "paired": paired_difference(teacher_hits, first_hits),
        "questions": labelled,
        "questions_without_gold": len(top) - labelled,
        "flat_rows": len(top) - with_favourite,
        "teacher_top1_rank_share": [r / with_favourite for r in ranks] if with_favourite else [],
    }
