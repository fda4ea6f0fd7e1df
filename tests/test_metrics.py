"""SQuAD normalisation/EM/F1, DPR has_answer, gold and answer recall, MRR, and evaluate_retrieval."""

from __future__ import annotations

import numpy as np
import pytest

from attnrag.data.records import Passage, QAExample
from attnrag.errors import InputError
from attnrag.evaluate.metrics import (
    answer_recall_at_k,
    dpr_tokens,
    exact_match,
    f1_score,
    has_answer,
    mrr,
    normalize_answer,
    recall_at_k,
)
from attnrag.evaluate.retrieval import evaluate_retrieval
from attnrag.retrieval.index import PassageIndex


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("The Eiffel Tower", "eiffel tower"),
        ("  a  Cat,   an apple!  ", "cat apple"),
        ("theatre", "theatre"),  # articles only as whole words
        ("U.S.A.", "usa"),
        ("Anne's", "annes"),
        ("", ""),
    ],
)
def test_normalize_answer(raw: str, norm: str) -> None:
    assert normalize_answer(raw) == norm


def test_exact_match() -> None:
    assert exact_match("the Eiffel tower.", ["Eiffel Tower"]) == 1.0
    assert exact_match("Paris", ["London", "paris"]) == 1.0
    assert exact_match("Paris, France", ["Paris"]) == 0.0
    assert exact_match("Paris", "Paris") == 1.0  # a single string is one gold answer
    with pytest.raises(InputError, match="gold answers"):
        exact_match("x", [])


def test_f1_score() -> None:
    assert f1_score("Paris", ["Paris"]) == 1.0
    assert f1_score("in Paris France", ["Paris"]) == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))
    assert f1_score("the cat sat", ["a cat sat down", "dog"]) == pytest.approx(0.8)  # p=1, r=2/3
    assert f1_score("dog dog", ["dog"]) == pytest.approx(2 * 0.5 * 1 / 1.5)  # counts, not sets
    assert f1_score("blue", ["red"]) == 0.0
    assert f1_score("the", ["a"]) == 1.0  # both normalise to empty
    assert f1_score("the", ["red"]) == 0.0


def test_has_answer() -> None:
    text = "Barack Obama was born in Honolulu, Hawaii, in 1961. He was the 44th U.S. president."
    assert has_answer(text, ["honolulu"])
    assert has_answer(text, ["Honolulu, Hawaii"])  # the comma is a token in both
    assert has_answer(text, ["nowhere", "1961"])
    assert has_answer(text, "U.S.")
    assert not has_answer(text, ["Honolulu Hawaii"])  # not contiguous without the comma
    assert not has_answer(text, ["Hono"])  # whole tokens only
    assert not has_answer(text, ["44"])  # "44th" is one token
    assert not has_answer(text, [""])  # an empty answer matches nothing
    assert has_answer("Café Müller opened", ["cafe\u0301 müller"])  # NFD: composed == decomposed
    assert dpr_tokens("It's 3.5%!") == ["it", "'", "s", "3", ".", "5", "%", "!"]


def test_recall_at_k_and_mrr() -> None:
    retrieved = [["a", "b", "c"], ["x", "y", "g"], ["p", "q", "r"], ["m", "n", "o"]]
    gold = [["a"], ["g", "zz"], ["nope"], []]  # last question has no gold: skipped
    r = recall_at_k(retrieved, gold, ks=[1, 3, 2])
    assert r == {
        "gold_recall@1": 1 / 3,
        "gold_recall@2": 1 / 3,
        "gold_recall@3": 2 / 3,
        "n": 3,
        "n_skipped": 1,
    }
    assert mrr(retrieved, gold) == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert mrr([["a"]], [[]]) is None
    assert recall_at_k([["a"]], [[]], ks=[1]) == {"gold_recall@1": None, "n": 0, "n_skipped": 1}
    with pytest.raises(InputError, match="align"):
        recall_at_k(retrieved, gold[:2], ks=[1])
    with pytest.raises(InputError, match="positive"):
        recall_at_k(retrieved, gold, ks=[0])


def test_answer_recall_at_k() -> None:
    texts = [["nothing here", "born in 1961"], ["Paris is big", "x"]]
    r = answer_recall_at_k(texts, [["1961"], ["paris", "lyon"]], ks=[1, 2])
    assert r == {"answer_recall@1": 0.5, "answer_recall@2": 1.0, "n": 2}


def test_evaluate_retrieval_on_a_hand_made_index() -> None:
    """A stub encoder with fixed query vectors, so the expected ranking is known exactly."""
    passages = {
        "p0": Passage("p0", "T0", "The capital of France is Paris."),
        "p1": Passage("p1", "T1", "Nothing relevant."),
        "p2": Passage("p2", "T2", "Mount Everest is 8849 metres high."),
    }
    index = PassageIndex.build(np.eye(3, dtype=np.float32), list(passages))

    class StubEncoder:
        def encode_queries(self, texts, batch_size=64):
            vecs = {"q-paris": [1.0, 0.5, 0.0], "q-everest": [0.0, 1.0, 0.5]}
            return np.array([vecs[t] for t in texts], dtype=np.float32)

    examples = [
        QAExample("1", "q-paris", ["Paris"], ["p0"]),
        QAExample("2", "q-everest", ["8849 metres"], []),
    ]
    out = evaluate_retrieval(index, passages, StubEncoder(), examples, ks=(1, 2))
    assert out["retrieved_ids"] == [["p0", "p1"], ["p1", "p2"]]
    assert out["answer_recall@1"] == 0.5 and out["answer_recall@2"] == 1.0
    assert out["answer_mrr"] == pytest.approx((1 + 0.5) / 2)
    assert out["gold_recall@1"] == 1.0 and out["mrr"] == 1.0 and out["n_with_gold"] == 1
    assert out["n"] == 2 and out["ks"] == [1, 2]
    no_gold = evaluate_retrieval(index, passages, StubEncoder(), examples[1:], ks=(1,))
    assert "gold_recall@1" not in no_gold and "mrr" not in no_gold
    with pytest.raises(InputError, match="number of indexed passages"):
        evaluate_retrieval(index, passages, StubEncoder(), examples, ks=(5,))
