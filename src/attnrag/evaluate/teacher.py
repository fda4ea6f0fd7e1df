"""The teacher check: does the reader's teacher pick the gold passage more often than the retriever?

A teacher clearly below its student pulled the student down in every run measured here
(docs/analysis.md, the teacher check), so the trainer logs this for every distillation and
``attnrag diagnose`` compares the two before any training. It also records at which retrieved rank
the teacher's favourite sits: a strong preference for one position is a bias between passages that
averaging the teacher over shuffled passage orders (``TeacherConfig.shuffle_orders``) removes.
"""

from __future__ import annotations

import torch

from ..data.records import QAExample


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
    flat = [bool((row == row[0]).all()) for row in scores] if len(scores) else []
    top = [None if f else int(t) for f, t in zip(flat, scores.argmax(-1).tolist())] if len(scores) else []
    hits = reachable = labelled = retriever_hits = 0
    for row_top, ids, ex in zip(top, candidate_ids, examples, strict=True):
        gold = set(ex.gold_passage_ids)
        if not gold:
            continue
        labelled += 1
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
        "questions": labelled,
        "questions_without_gold": len(top) - labelled,
        "flat_rows": len(top) - with_favourite,
        "teacher_top1_rank_share": [r / with_favourite for r in ranks] if with_favourite else [],
    }
