"""Where the reader's attention and DPR's answer match disagree, and which one is right.

Both teach the retriever from the same candidates: attention's favourite (the passage the reader's
answer tokens attended to most) and answer match's positive (the highest-ranked candidate whose
text holds a gold answer). Per question of a run's cached teacher pass, this sorts out:

- what attention's favourite is: a gold passage, another passage holding the answer string, or a
  passage without it;
- where the two differ, which one is gold (attention only, answer match only, neither);
- what the answer-gated target (attention over the answer-bearing candidates) picks instead.

The cache holds the questions, their candidates and the teacher's scores (``teacher_cache.pt``), so
the analysis needs no model, only the run's data for the passage texts, answers and gold ids.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..data.formats import load_corpus_dir
from ..errors import InputError
from ..evaluate.metrics import dpr_tokens, tokens_have_answer
from ..run import RunDir
from ..train.checkpoint import load_teacher_cache
from ..train.config import TrainConfig


def _argmax(values: list[float], allowed: list[int] | None = None) -> int | None:
    pool = list(range(len(values))) if allowed is None else allowed
    return max(pool, key=lambda i: (values[i], -i)) if pool else None


def classify(candidates: list[str], scores: list[float], bearing: list[bool], gold: set[str]) -> dict:
    """One question: attention's favourite, answer match's positive and the gated favourite, each
    as an index into ``candidates`` (``None`` where there is none), and what each one is."""
    attention = _argmax(scores)
    hits = [i for i, b in enumerate(bearing) if b]
    answer = hits[0] if hits else None
    gated = _argmax(scores, hits) if hits else None

    def kind(i: int | None) -> str:
        if i is None:
            return "none"
        if candidates[i] in gold:
            return "gold"
        return "other answer-bearing" if bearing[i] else "no answer"

    return {"attention": kind(attention), "answer": kind(answer), "gated": kind(gated),
            "agree": attention == answer, "gold_among_candidates": bool(gold & set(candidates)),
            "answer_bearing": len(hits)}


def target_disagreement(run: str | Path) -> dict:
    """The per-question comparison over a run's cached teacher pass (see the module docstring)."""
    layout = RunDir(Path(run))
    cache = load_teacher_cache(layout.teacher_cache_path)
    if cache is None:
        raise InputError("the run has no teacher cache (a teacher target's run writes teacher_cache.pt)",
                         path=layout.teacher_cache_path)
    cfg = TrainConfig.load(layout.config_path)
    passages, splits = load_corpus_dir(cfg.data, cfg.distractors)
    text = {p.id: p.text for p in passages}
    by_id = {e.id: e for split in splits.values() for e in split}
    rows = []
    for qid, candidates, scores in zip(cache["question_ids"], cache["candidate_ids"], cache["rows"], strict=True):
        example = by_id.get(qid)
        if example is None:
            raise InputError(f"question {qid!r} of the cache is not in the run's data", path=cfg.data)
        answers = [dpr_tokens(a) for a in example.answers]
        bearing = [tokens_have_answer(dpr_tokens(text[p]), answers) for p in candidates]
        rows.append(classify(list(candidates), [float(s) for s in scores], bearing, set(example.gold_passage_ids)))
    n = len(rows)
    disagree = [r for r in rows if not r["agree"] and r["answer"] != "none"]

    def shares(items: list[dict], field: str) -> dict:
        counts = Counter(r[field] for r in items)
        return {k: {"n": v, "share": round(v / len(items), 4)} for k, v in sorted(counts.items())} if items else {}

    right = Counter("attention only" if r["attention"] == "gold" else "answer match only" if r["answer"] == "gold"
                    else "neither" for r in disagree)
    no_answer = [r for r in rows if r["answer"] == "none"]
    with_answer = [r for r in rows if r["answer"] != "none"]
    several = [r for r in rows if r["answer_bearing"] >= 2]
    return {
        "run": str(Path(run)), "questions": n,
        "gold_among_candidates": round(sum(r["gold_among_candidates"] for r in rows) / n, 4) if n else None,
        "attention_favourite": shares(rows, "attention"),
        "answer_positive": shares(rows, "answer"),
        "gated_favourite": shares(rows, "gated"),
        "agree": sum(r["agree"] for r in rows),
        "disagree": {"n": len(disagree), "which_is_gold": dict(sorted(right.items())),
                     "attention_favourite": shares(disagree, "attention"),
                     "gated_favourite": shares(disagree, "gated")},
        "with_answer_bearing_candidate": {"n": len(with_answer), "attention_favourite": shares(with_answer, "attention"),
                                          "answer_positive": shares(with_answer, "answer"),
                                          "gated_favourite": shares(with_answer, "gated")},
        # where the reader can add something to the string match: several candidates hold the answer,
        # and the gated target picks by attention where answer match takes the highest-ranked one
        "several_answer_bearing": {"n": len(several), "answer_positive": shares(several, "answer"),
                                   "gated_favourite": shares(several, "gated")},
        "no_answer_bearing_candidate": {"n": len(no_answer), "attention_favourite": shares(no_answer, "attention"),
                                        "gold_among_candidates": round(sum(r["gold_among_candidates"] for r in no_answer)
                                                                       / len(no_answer), 4) if no_answer else None},
    }


def compare_targets(examples, candidates, scores, tau_gold: float = 0.01, min_labelled: int = 10,
                    split: str = "dev") -> dict:
    """Which target to train with, judged on held-out questions before any training.

    ``candidates``: each question's first-stage candidates (:class:`Passage` lists, rank order);
    ``scores``: the teacher's scores of them (``[n, K]``). Every target of
    :mod:`attnrag.distill.targets` is built from the same scores; for each, the questions it keeps and
    how often its favourite is gold / holds an answer (:func:`~attnrag.distill.targets.target_stats`).

    The recommendation compares, on the labelled questions where answer match has a positive (the
    only ones it teaches), how often each reader target's favourite is gold against answer match's
    positive, paired (95% bootstrap): a reader target is recommended only when that interval lies
    above 0; otherwise ``answer`` (it needs no reader). Without ``min_labelled`` questions with gold
    passage ids the targets cannot be told apart (answer match's positive holds an answer by
    construction), and ``answer`` is recommended as the cheaper one, saying so. Validated on one
    grid (TweetQA: docs/results/real/tweetqa-open/targets/). ``split`` names the questions in the
    message (``diagnose`` checks dev questions; a script may check a run's training questions).
    """
    import numpy as np

    from ..distill.targets import (
        answer_gated_target,
        answer_target,
        target_stats,
        teacher_target,
        teacher_top1_target,
    )
    from ..evaluate.bootstrap import paired_bootstrap

    ids = [[p.id for p in row] for row in candidates]
    bearing = [[tokens_have_answer(dpr_tokens(p.text), [dpr_tokens(a) for a in e.answers]) for p in row]
               for e, row in zip(examples, candidates, strict=True)]
    rows = [[float(x) for x in r] for r in scores.tolist()]
    built = {
        "teacher": [teacher_target(c, r, tau_gold) for c, r in zip(ids, rows, strict=True)],
        "teacher-top1": [teacher_top1_target(c, r) for c, r in zip(ids, rows, strict=True)],
        "answer": [answer_target(c, b) for c, b in zip(ids, bearing, strict=True)],
        "answer-gated": [answer_gated_target(c, r, b, tau_gold, "teacher") for c, r, b in zip(ids, rows, bearing, strict=True)],
        "answer-gated (drop)": [answer_gated_target(c, r, b, tau_gold, "drop") for c, r, b in zip(ids, rows, bearing, strict=True)],
    }
    holds = [dict(zip(c, b, strict=True)) for c, b in zip(ids, bearing, strict=True)]
    gold = [e.gold_passage_ids for e in examples]
    stats = {name: target_stats(t, gold, ids, lambda i, pid: holds[i].get(pid, False)) for name, t in built.items()}
    common = [i for i, t in enumerate(built["answer"]) if t is not None and gold[i]]
    out: dict = {"questions": len(examples), "split": split, "targets": stats, "compared_on": len(common)}
    if len(common) < min_labelled:
        out.update({"recommended": "answer", "decided_by": "no gold passage ids", "message": (
            f"target: answer (DPR answer match). Only {len(common)} {split} questions have gold passage ids and an "
            "answer-bearing candidate: the reader's targets cannot be checked against answer match without them, "
            "and answer match needs no reader")})
        return out

    def hits(name: str) -> np.ndarray:
        return np.array([float(built[name][i] is not None and built[name][i].favourite in set(gold[i]))
                         for i in common])

    base = hits("answer")
    versus = {name: {"favourite_is_gold": float(hits(name).mean()), **paired_bootstrap(hits(name), base)}
              for name in ("teacher", "teacher-top1", "answer-gated", "answer-gated (drop)")}
    out["versus_answer"] = {"answer_favourite_is_gold": float(base.mean()), **versus}
    winners = {n: v for n, v in versus.items() if v["low"] > 0}
    if winners:
        best = max(winners, key=lambda n: winners[n]["delta"])
        w = winners[best]
        out.update({"recommended": best.replace(" (drop)", ""), "gate_fallback": "drop" if "drop" in best else None,
                    "decided_by": "paired favourite-is-gold against answer match", "message": (
                        f"target: {best}: its favourite is gold {w['favourite_is_gold']:.2f} against answer match's "
                        f"{base.mean():.2f} on {len(common)} {split} questions ({w['delta']:+.2f}, 95% [{w['low']:+.2f}, "
                        f"{w['high']:+.2f}])")})
        return out
    gated = versus["answer-gated (drop)"]
    out.update({"recommended": "answer", "decided_by": "paired favourite-is-gold against answer match", "message": (
        f"target: answer (DPR answer match, no reader needed): on the {len(common)} {split} questions it teaches, its "
        f"positive is gold {base.mean():.2f}; the reader's attention {versus['teacher']['favourite_is_gold']:.2f}, "
        f"attention among the answer-bearing candidates {gated['favourite_is_gold']:.2f} "
        f"({gated['delta']:+.2f}, 95% [{gated['low']:+.2f}, {gated['high']:+.2f}]): no reader target is better")})
    return out


__all__ = ["classify", "compare_targets", "target_disagreement"]
