"""``diagnose --pilot``: a short distillation on train, measured on dev answer recall, and timed."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from attnrag.analysis.config import PilotConfig
from attnrag.analysis.diagnose import diagnose
from attnrag.analysis.pilot import answer_hits
from attnrag.data.formats import load_corpus_dir
from attnrag.data.records import Passage, QAExample
from attnrag.errors import InputError
from attnrag.evaluate.metrics import has_answer

from helpers import save_tiny_bert, save_tiny_reader, small_world


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("pilot")
    return {"world": small_world(root / "world"), "reader": str(save_tiny_reader(root / "reader")),
            "bert": str(save_tiny_bert(root / "bert"))}


def test_answer_hits_by_hand():
    passages = {"a": Passage("a", "", "The capital is Paris."), "b": Passage("b", "", "Nothing here."),
                "c": Passage("c", "", "paris, again")}
    examples = [QAExample("1", "q?", ["Paris"]), QAExample("2", "q?", ["Rome"])]
    rows = [["b", "a", "c"], ["a", "c", "b"]]
    assert answer_hits(rows, passages, examples, 1).tolist() == [0.0, 0.0]
    assert answer_hits(rows, passages, examples, 2).tolist() == [1.0, 0.0]


def test_the_pilot_distils_a_copy_and_compares_it_on_dev(assets, tmp_path):
    pilot = PilotConfig(questions=8, steps=3, batch_size=4, dev_questions=12)
    report = diagnose(assets["reader"], assets["world"], n=4, retriever=assets["bert"], device="cpu", progress=False,
                      pilot={"retriever_lr": 1e-3, "precision": "fp32"}, pilot_config=pilot, out=tmp_path / "d.json")
    got = report["pilot"]
    assert got["n_dev"] == 12 and got["pilot"]["steps"] == 3 and got["timings"]["steps_logged"] == 3
    # "before" is the base retriever's dev answer recall@1, recomputed here independently
    from attnrag.evaluate.qa import load_system
    from attnrag.evaluate.retrieval import evaluate_retrieval

    passages, splits = load_corpus_dir(assets["world"])
    dev = [e for e in splits["dev"] if e.answers][:12]
    system = load_system(retriever=assets["bert"], passages=passages, load_reader=False, device="cpu")
    ids = evaluate_retrieval(system.index, system.passages, system.retriever, dev, ks=[5])["retrieved_ids"]
    by_id = {p.id: p for p in passages}
    expected = np.mean([has_answer(by_id[row[0]].text, e.answers) for row, e in zip(ids, dev)])
    r1 = got["changes"]["answer_recall@1"]
    assert r1["before"] == pytest.approx(expected)
    assert r1["low"] <= r1["delta"] <= r1["high"] and r1["delta"] == pytest.approx(r1["after"] - r1["before"])
    assert got["full_run"]["estimated_seconds"] > 0 and got["full_run"]["distill_questions"] == len(splits["train"])
    assert report["decided_by"] == ("pilot" if got["verdict"] != "uncertain" else report["decided_by"])
    assert got["message"] in report["message"]


def test_the_pilot_needs_a_corpus_directory(assets):
    with pytest.raises(InputError, match="corpus directory"):
        diagnose(assets["reader"], str(assets["world"] / "dev.jsonl"), n=2, retriever=assets["bert"],
                 pilot={}, progress=False)


def test_the_cli_takes_the_pilot_options(assets, tmp_path):
    from attnrag.cli import app

    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["diagnose", "--reader", assets["reader"], "--data", str(assets["world"]),
                                      "--retriever", assets["bert"], "--n", "3", "--pilot", "--pilot-questions", "4",
                                      "--pilot-steps", "2", "--pilot-batch-size", "2", "--pilot-dev-questions", "5",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    import json

    saved = json.loads(out.read_text())
    assert saved["pilot"]["pilot"] == {"questions": 4, "steps": 2, "batch_size": 2, "dev_questions": 5, "margin": 0.0}
    assert "pilot (4 questions, 2 steps)" in result.output
