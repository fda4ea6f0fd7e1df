"""``diagnose --pilot``: a short distillation on train, measured on dev answer recall, and timed."""

from __future__ import annotations

import dataclasses

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
    assert list(got["targets"]) == ["teacher", "answer"] and got["target"] == "teacher"
    teacher, answer = got["targets"]["teacher"], got["targets"]["answer"]
    assert got["n_dev"] == 12 and got["pilot"]["steps"] == 3 and teacher["timings"]["steps_logged"] == 3
    assert teacher["timings"]["teacher_seconds"] > 0 and answer["timings"]["teacher_seconds"] == 0.0
    assert (teacher["loss"], answer["loss"]) == ("candidates", "in-batch")  # each target's own loss
    # "before" is the base retriever's dev answer recall@1, recomputed here independently
    from attnrag.evaluate.qa import load_system
    from attnrag.evaluate.retrieval import evaluate_retrieval

    passages, splits = load_corpus_dir(assets["world"])
    dev = [e for e in splits["dev"] if e.answers][:12]
    system = load_system(retriever=assets["bert"], passages=passages, load_reader=False, device="cpu")
    ids = evaluate_retrieval(system.index, system.passages, system.retriever, dev, ks=[5])["retrieved_ids"]
    by_id = {p.id: p for p in passages}
    expected = np.mean([has_answer(by_id[row[0]].text, e.answers) for row, e in zip(ids, dev)])
    for one in (teacher, answer):
        r1 = one["changes"]["answer_recall@1"]
        assert r1["before"] == pytest.approx(expected)  # both start from the same retriever
        assert r1["low"] <= r1["delta"] <= r1["high"] and r1["delta"] == pytest.approx(r1["after"] - r1["before"])
        assert one["full_run"]["estimated_seconds"] > 0 and one["full_run"]["distill_questions"] == len(splits["train"])
    assert got["verdict"] == teacher["verdict"]
    assert report["decided_by"] == ("pilot" if got["verdict"] != "uncertain" else report["decided_by"])
    assert got["message"] in report["message"] and "recommended:" in got["message"]
    assert got["recommendation"]["target"] in (None, "teacher", "answer")


def test_targets_that_read_the_reader_share_one_teacher_pass(assets):
    from attnrag.analysis.pilot import run_pilot

    pilot = PilotConfig(questions=6, steps=2, batch_size=3, dev_questions=6, targets=("answer-gated",))
    got = run_pilot({"data": str(assets["world"]), "reader": assets["reader"], "retriever": assets["bert"],
                     "device": "cpu", "precision": "fp32", "n_passages": 3}, pilot, progress=False)
    first, second = got["targets"]["teacher"]["timings"], got["targets"]["answer-gated"]["timings"]
    assert first["teacher_rows_reused"] == 0 and second["teacher_rows_reused"] == 6
    # the full run with the gated target would pay the pass the pilot reused: its estimate counts it
    assert got["targets"]["answer-gated"]["full_run"]["estimated_seconds"] >= first["teacher_seconds"]


def test_unknown_pilot_targets_are_refused_by_name(assets):
    from attnrag.analysis.pilot import run_pilot

    with pytest.raises(InputError, match="pilot targets \\['nonsense'\\] unknown"):
        run_pilot({"data": str(assets["world"]), "reader": assets["reader"], "retriever": assets["bert"]},
                  PilotConfig(targets=("nonsense",)), progress=False)


def _pilot(verdict: str) -> dict:
    return {"verdict": verdict}


def test_recommend_by_hand():
    from attnrag.analysis.pilot import recommend

    rng = np.random.default_rng(0)
    base = (rng.random(400) < 0.5).astype(float)
    better = base.copy()
    better[np.flatnonzero(base == 0)[:60]] = 1.0  # +0.15 over base
    slightly = better.copy()
    slightly[np.flatnonzero(better == 1)[:2]] = 0.0  # 2 questions below "better": level with it
    hits = lambda a: {"answer_recall@1": a}  # noqa: E731
    # nothing effective: keep the retriever
    none = recommend({"teacher": _pilot("uncertain"), "answer": _pilot("ineffective")},
                     {"teacher": hits(better), "answer": hits(base)}, 0.0)
    assert none["target"] is None and "keep the retriever" in none["message"]
    # attention best, answer match level with it: answer match (no reader pass, same retriever within noise)
    level = recommend({"teacher": _pilot("effective"), "answer": _pilot("effective")},
                      {"teacher": hits(better), "answer": hits(slightly)}, 0.0)
    assert level["target"] == "answer" and level["best"] == "teacher"
    assert level["versus"]["answer"]["delta"] == pytest.approx(2 / 400) and level["versus"]["answer"]["low"] <= 0
    # attention clearly best: attention
    clear = recommend({"teacher": _pilot("effective"), "answer": _pilot("effective")},
                      {"teacher": hits(better), "answer": hits(base)}, 0.0)
    assert clear["target"] == "teacher" and clear["versus"]["answer"]["low"] > 0
    # answer match best: answer match, whatever the reader-free rule
    flipped = recommend({"teacher": _pilot("effective"), "answer": _pilot("effective")},
                        {"teacher": hits(slightly), "answer": hits(better)}, 0.0)
    assert flipped["target"] == "answer" and flipped["best"] == "answer"


def test_one_pilot_by_hand():
    from attnrag.analysis.pilot import _one_pilot
    from attnrag.train.config import TrainConfig

    before = {"answer_recall@1": np.array([0, 0, 1, 1, 0, 1, 0, 0.0]), "answer_recall@5": np.ones(8)}
    after = {"answer_recall@1": np.array([1, 0, 1, 1, 1, 1, 0, 1.0]), "answer_recall@5": np.ones(8)}
    timings = {"setup_seconds": 10.0, "teacher_seconds": 4.0, "step_seconds": 0.5, "prepare_seconds": 2.0,
               "refresh_seconds": None, "steps_logged": 30, "batch_size": 8}
    full = TrainConfig(distill_questions=100, distill_steps=40, pilot_steps=0)
    got = _one_pilot(before, after, timings, 0.5, PilotConfig(), full, questions=20, loss="candidates", seconds=7.0)
    r1 = got["changes"]["answer_recall@1"]
    assert (r1["before"], r1["after"], r1["delta"]) == (3 / 8, 6 / 8, 3 / 8)
    # set-up + teacher x 100 questions + preparation x 100/20 + 40 steps, each of 32 questions where the
    # pilot's took 8 (its log's batch_size): 4 pilot steps' time each; a query tower: no re-encoding
    expected = 10.0 + 0.5 * 100 + 2.0 * 5 + 0.5 * (32 / 8) * 40
    assert got["full_run"]["estimated_seconds"] == expected
    assert got["full_run"]["pilot_share"] == round(7.0 / expected, 3)
    assert got["verdict"] == ("effective" if r1["low"] > 0 else "uncertain")
    # a tied tower (re-encoded after the pilot's loop, 3 s), evaluated every 15 steps, with its own
    # in-run pilot of 10 steps on 16 questions, 4 a step (the pilot here took 8 a step): that pilot's
    # loop and, with no dev pool, one re-encoding are counted too
    tied = {**timings, "refresh_seconds": 3.0}
    full = TrainConfig(distill_questions=100, distill_steps=40, eval_every=15, distill_batch_size=16,
                       pilot_steps=10, pilot_questions=16, pilot_batch_size=4, pilot_pool=0)
    got = _one_pilot(before, after, tied, 0.0, PilotConfig(), full, questions=20, loss="candidates", seconds=7.0)
    own_pilot = 2.0 * 16 / 20 + 0.5 * (4 / 8) * 10 + 3.0 * 1
    full_loop = 2.0 * 5 + 0.5 * (16 / 8) * 40 + 3.0 * 3  # evaluations at steps 15, 30 and 40
    assert got["full_run"]["estimated_seconds"] == round(10.0 + own_pilot + full_loop, 1)
    # with a dev pool (the default) the in-run pilot re-encodes only the pool: no corpus re-encoding
    pooled = _one_pilot(before, after, tied, 0.0, PilotConfig(), dataclasses.replace(full, pilot_pool=20),
                        questions=20, loss="candidates", seconds=7.0)
    assert pooled["full_run"]["estimated_seconds"] == round(10.0 + own_pilot - 3.0 + full_loop, 1)


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
    assert saved["pilot"]["pilot"] == {"questions": 4, "steps": 2, "batch_size": 2, "dev_questions": 5, "margin": 0.0,
                                       "targets": ["teacher", "answer"]}
    assert "pilot (4 questions, 2 steps)" in result.output and "recommended:" in result.output


def test_a_decisive_pilot_leads_the_message(assets, monkeypatch):
    """The pilot measures the outcome on dev, so when it decides, the report says so first (the
    indicators' opposite verdict stays below it, quoted, not on top)."""
    import attnrag.analysis.pilot as pilot_module

    fake = {"verdict": "effective", "message": "pilot (8 questions, 3 steps): the fake figures", "targets": {},
            "recommendation": {"target": "answer"}}
    monkeypatch.setattr(pilot_module, "run_pilot", lambda *args, **kwargs: fake)
    report = diagnose(assets["reader"], assets["world"], n=4, retriever=assets["bert"], device="cpu", progress=False,
                      pilot={})
    assert report["verdict"] == "effective" and report["decided_by"] == "pilot"
    first, *rest = report["message"].split("\n")
    assert first.startswith("attention distillation from this reader is likely effective, decided by its pilot")
    import re

    assert re.search(r"the teacher check said (effective|ineffective|uncertain):$", first)
    assert rest[-1] == fake["message"]
