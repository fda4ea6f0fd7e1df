"""QA and retrieval metrics, written to match the reference scripts the paper's numbers come from.

* ``normalize_answer`` / ``exact_match`` / ``f1_score``: the SQuAD evaluation script (max over golds).
* ``has_answer``: DPR's answer matching (Unicode NFD, lower case, DPR's ``SimpleTokenizer`` word
  tokens, contiguous token match), which is what "answer recall@k" means in DPR/FiD/ATLAS tables.
* Gold-id metrics (``recall_at_k``, ``mrr``) skip questions without gold passage ids (NQ-open has
  none), and say how many were counted.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import regex  # a hard dependency of transformers; \p{..} classes are needed to match DPR exactly

from ..errors import InputError

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
# DPR's SimpleTokenizer: runs of letters/numbers/marks, or any single non-space non-control char.
_DPR_TOKEN = regex.compile(
    r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])", flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE
)


# ---------------------------------------------------------------- answer-level (SQuAD)
def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, drop articles a/an/the, collapse whitespace (SQuAD v1.1)."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _check_golds(golds: Sequence[str]) -> Sequence[str]:
    if isinstance(golds, str):
        return [golds]
    if not golds:
        raise InputError(
            "no gold answers to compare with; every example needs at least one answer", field="answers"
        )
    return golds


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    """1.0 if the normalised prediction equals any normalised gold answer, else 0.0."""
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(g) for g in _check_golds(golds)))


def _f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not pred_tokens or not gold_tokens:  # SQuAD v2 convention: both empty -> 1, one empty -> 0
        return float(pred_tokens == gold_tokens)
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1_score(prediction: str, golds: Sequence[str]) -> float:
    """SQuAD token F1 (bag of normalised tokens), max over gold answers."""
    pred = normalize_answer(prediction).split()
    return max(_f1(pred, normalize_answer(g).split()) for g in _check_golds(golds))


# ---------------------------------------------------------------- passage-level (DPR)
def dpr_tokens(text: str) -> list[str]:
    """DPR's uncased word tokens of NFD-normalised text (punctuation marks are tokens of their own)."""
    return [m.group().lower() for m in _DPR_TOKEN.finditer(unicodedata.normalize("NFD", text))]


def _contains(tokens: list[str], answer: list[str]) -> bool:
    n = len(answer)
    return any(tokens[i : i + n] == answer for i in range(len(tokens) - n + 1))


def has_answer(text: str, answers: str | Iterable[str]) -> bool:
    """True if some answer's token sequence occurs contiguously in ``text`` (DPR string match).

    Answers that tokenise to nothing never match (DPR would count them as always present).
    """
    answers = [answers] if isinstance(answers, str) else answers
    return tokens_have_answer(dpr_tokens(text), [dpr_tokens(a) for a in answers])


def tokens_have_answer(text_tokens: list[str], answer_tokens: Iterable[list[str]]) -> bool:
    """:func:`has_answer` on pre-tokenised input, for callers that reuse tokens across questions."""
    return any(ans and _contains(text_tokens, ans) for ans in answer_tokens)


# ---------------------------------------------------------------- retrieval
def _check_ks(ks: Iterable[int]) -> list[int]:
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise InputError(f"ks must be positive integers, got {ks}")
    return ks


def recall_from_hits(hits_per_q: Sequence[Sequence[bool]], ks: Iterable[int], prefix: str) -> dict:
    """``{prefix@k: share of questions with a hit in the top k, "n": n}``; ``None`` values when n == 0."""
    ks = _check_ks(ks)
    n = len(hits_per_q)
    out: dict = {f"{prefix}@{k}": (sum(any(h[:k]) for h in hits_per_q) / n if n else None) for k in ks}
    out["n"] = n
    return out


def recall_at_k(
    retrieved_ids_per_q: Sequence[Sequence[str]], gold_ids_per_q: Sequence[Sequence[str]], ks: Iterable[int]
) -> dict:
    """Gold recall: a gold passage id is among the top k. Questions without gold ids are skipped."""
    _same_length(retrieved_ids_per_q, gold_ids_per_q)
    hits = [[r in set(g) for r in ret] for ret, g in zip(retrieved_ids_per_q, gold_ids_per_q) if g]
    out = recall_from_hits(hits, ks, "gold_recall")
    out["n_skipped"] = len(gold_ids_per_q) - out["n"]
    return out


def answer_recall_at_k(
    retrieved_texts_per_q: Sequence[Sequence[str]], answers_per_q: Sequence[Sequence[str]], ks: Iterable[int]
) -> dict:
    """Answer recall: a top-k passage text contains a gold answer (:func:`has_answer`)."""
    _same_length(retrieved_texts_per_q, answers_per_q)
    hits = [[has_answer(t, a) for t in texts] for texts, a in zip(retrieved_texts_per_q, answers_per_q)]
    return recall_from_hits(hits, ks, "answer_recall")


def answer_hits(retrieved: Sequence[Sequence[str]], passages, examples, k: int) -> np.ndarray:
    """1.0 where one of the top ``k`` of a question's ``retrieved`` ids holds a gold answer (DPR
    matching), per question; ``passages`` maps an id to its passage. Per question, so two retrievers
    can be compared paired."""
    out = []
    for row, e in zip(retrieved, examples, strict=True):
        answers = [dpr_tokens(a) for a in e.answers]
        out.append(float(any(tokens_have_answer(dpr_tokens(passages[p].text), answers) for p in row[:k])))
    return np.array(out)


def mrr_from_hits(hits_per_q: Sequence[Sequence[bool]]) -> float | None:
    """Mean of 1 / rank of the first hit (0 when there is none); ``None`` for no questions."""
    if not hits_per_q:
        return None
    return sum(next((1.0 / (i + 1) for i, h in enumerate(hits) if h), 0.0) for hits in hits_per_q) / len(
        hits_per_q
    )


def mrr(
    retrieved_ids_per_q: Sequence[Sequence[str]], gold_ids_per_q: Sequence[Sequence[str]]
) -> float | None:
    """Gold MRR over the retrieved lists as given; questions without gold ids are skipped."""
    _same_length(retrieved_ids_per_q, gold_ids_per_q)
    return mrr_from_hits(
        [[r in set(g) for r in ret] for ret, g in zip(retrieved_ids_per_q, gold_ids_per_q) if g]
    )


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise InputError(f"{len(a)} retrieved lists but {len(b)} gold lists; they must align per question")
