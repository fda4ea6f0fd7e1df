"""QA evaluation reuses the answers a reader already gave to the same prompt, and only those."""

from __future__ import annotations

import pytest

from attnrag.data.formats import load_corpus_dir
from attnrag.evaluate.qa import evaluate_qa, load_system

from helpers import save_tiny_bert, save_tiny_reader, small_world


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa")
    world = small_world(root / "world")
    passages, splits = load_corpus_dir(world)
    built = load_system(reader=str(save_tiny_reader(root / "reader")), retriever=str(save_tiny_bert(root / "bert")),
                        passages=passages, device="cpu")
    return built, splits["test"][:8]


def test_known_answers_are_reused_and_new_prompts_generated(system, monkeypatch):
    built, examples = system
    fresh = evaluate_qa(built, examples, n_passages=2, max_new_tokens=4, batch_size=3, progress=False)
    assert fresh["answers_generated"] == len({(e.question, tuple(p["retrieved"])) for e, p in
                                              zip(examples, fresh["predictions"])})
    memo: dict = {}
    first = evaluate_qa(built, examples[:5], n_passages=2, max_new_tokens=4, batch_size=3, progress=False,
                        known_answers=memo)
    assert len(memo) == first["answers_generated"] and first["answers_generated"] > 0
    calls = []
    generate = built.reader.generate
    monkeypatch.setattr(built.reader, "generate", lambda q, *a, **k: calls.append(list(q)) or generate(q, *a, **k))
    second = evaluate_qa(built, examples, n_passages=2, max_new_tokens=4, batch_size=3, progress=False,
                         known_answers=memo)
    assert calls == [[e.question for e in examples[5:]]]  # only the prompts not answered before
    assert second["answers_generated"] == 3
    assert [p["prediction"] for p in second["predictions"]] == [p["prediction"] for p in fresh["predictions"]]
    assert second["em"] == fresh["em"] and second["f1"] == fresh["f1"]
    calls.clear()
    again = evaluate_qa(built, examples, n_passages=2, max_new_tokens=4, batch_size=3, progress=False,
                        known_answers=memo)
    assert calls == [] and again["answers_generated"] == 0
    assert [p["prediction"] for p in again["predictions"]] == [p["prediction"] for p in fresh["predictions"]]
