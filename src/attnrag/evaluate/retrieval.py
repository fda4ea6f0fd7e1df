"""Retrieval evaluation: encode the questions, search the index, score answer and gold recall."""

from __future__ import annotations

from collections.abc import Sequence

from ..data.records import Passage, QAExample
from ..errors import InputError
from ..retrieval.encoder import BiEncoder
from ..retrieval.hybrid import DEFAULT_DEPTH, WEIGHT_GRID
from ..retrieval.index import PassageIndex, search_questions
from .metrics import dpr_tokens, mrr_from_hits, recall_from_hits, tokens_have_answer


def evaluate_retrieval(
    index: PassageIndex,
    passages_by_id: dict[str, Passage],
    encoder: BiEncoder,
    examples: Sequence[QAExample],
    ks: Sequence[int] = (1, 5, 10),
    batch_size: int = 64,
) -> dict:
    """Retrieve ``max(ks)`` passages per question and report recall.

    Returns ``n``, ``ks``, ``answer_recall@k`` (DPR match on passage *text*, as DPR does),
    ``answer_mrr``, and, when some examples have gold passage ids, ``gold_recall@k``, ``mrr`` and
    ``n_with_gold``; MRR is computed over the top ``max(ks)``. ``retrieved_ids`` holds the top
    ``max(ks)`` ids per question, in example order.
    """
    if not examples:
        raise InputError("no examples to evaluate")
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise InputError(f"ks must be positive integers, got {ks}")
    _, ids = search_questions(index, encoder, [e.question for e in examples], ks[-1], batch_size=batch_size)
    missing = next((i for row in ids for i in row if i not in passages_by_id), None)
    if missing is not None:
        raise InputError(f"the index returned passage id '{missing}' that the passage collection lacks")

    token_cache: dict[str, list[str]] = {}  # popular passages come back for many questions

    def tokens(pid: str) -> list[str]:
        if pid not in token_cache:
            token_cache[pid] = dpr_tokens(passages_by_id[pid].text)
        return token_cache[pid]

    answer_hits = []
    for e, row in zip(examples, ids):
        answers = [dpr_tokens(a) for a in e.answers]
        answer_hits.append([tokens_have_answer(tokens(p), answers) for p in row])
    out: dict = {"n": len(examples), "ks": ks}
    out.update({k: v for k, v in recall_from_hits(answer_hits, ks, "answer_recall").items() if k != "n"})
    out["answer_mrr"] = mrr_from_hits(answer_hits)
    gold_hits = [
        [p in set(e.gold_passage_ids) for p in row] for e, row in zip(examples, ids) if e.gold_passage_ids
    ]
    if gold_hits:
        out.update({k: v for k, v in recall_from_hits(gold_hits, ks, "gold_recall").items() if k != "n"})
        out["mrr"] = mrr_from_hits(gold_hits)
        out["n_with_gold"] = len(gold_hits)
    out["retrieved_ids"] = ids
    return out


def tune_hybrid_weight(lexical, dense, encoder: BiEncoder | None, examples: Sequence[QAExample],
                       depth: int = DEFAULT_DEPTH, grid: Sequence[float] = WEIGHT_GRID, check: bool = True) -> dict:
    """The convex hybrid's lexical weight that maximises recall@1 on ``examples`` (a dev split).

    Both sides are searched once, to ``depth``, and fused for every weight of ``grid`` (so the grid
    costs one dense and one BM25 search, not eleven). The metric is gold recall@1 when the examples
    carry gold passage ids, else answer recall@1 (DPR match). Ties go to the weight closest to 0.5.
    Returns ``{"weight", "metric", "table": {weight: recall@1}, "n", "depth"}``.
    """
    from ..retrieval.hybrid import fuse_lists, tune_weight

    if not examples:
        raise InputError("no dev questions to tune the hybrid weight on", field="tune_on")
    depth = min(int(depth), len(dense))
    questions = [e.question for e in examples]
    lex_scores, lex_ids = lexical.search(questions, depth)
    dense_scores, dense_ids = search_questions(dense, encoder, questions, depth, check=check)
    passages = dense.passages or lexical.passages
    gold = any(e.gold_passage_ids for e in examples)
    metric = "gold_recall@1" if gold else "answer_recall@1"
    answers = [[dpr_tokens(a) for a in e.answers] for e in examples]

    def recall_at_1(weight: float) -> float:
        _, ids = fuse_lists(lex_scores, lex_ids, dense_scores, dense_ids, 1, "convex", weight)
        if gold:
            hits = [row[0] in set(e.gold_passage_ids) for e, row in zip(examples, ids) if e.gold_passage_ids]
        else:
            hits = [tokens_have_answer(dpr_tokens(passages[row[0]].text), a) for a, row in zip(answers, ids)]
        return sum(hits) / len(hits)

    best, table = tune_weight(recall_at_1, grid)
    return {"weight": best, "metric": metric, "table": {str(w): v for w, v in table.items()}, "n": len(examples),
            "depth": depth}
