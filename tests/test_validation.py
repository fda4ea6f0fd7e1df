"""The out-of-sample validation of diagnose's predictors (attnrag.analysis.validation), on results files
and records written by hand, each figure checked against a hand computation."""

from __future__ import annotations

import json
import math
from dataclasses import asdict

import pytest

from attnrag.errors import InputError

from attnrag.analysis.validation import (Distillation, collect, diagnose_point_verdict, diagnose_verdict,
                                         interval_verdict, leave_one_out, on_pilot_rows,
                                         pilot_cost, point_verdict, read_sources, right, table, teacher_choices)

SHARE = "answer_attn_share_ge_0.057"


def interval(low: float, high: float) -> dict:
    return {"difference": (low + high) / 2, "low": low, "high": high, "n": 100}


def results_file(tmp_path, name: str, indicator_split: str | None = "dev") -> str:
    teacher = {"teacher_top1_gold": 0.7, "retriever_top1_gold": 0.6, "questions": 100,
               "paired": interval(0.02, 0.18), "answer_check": {"paired": interval(-0.05, 0.01), "informative": 80,
                                "teacher_top1_answer": 0.8, "first_stage_top1_answer": 0.82}}
    rows = {
        "offtheshelf": {"status": "done", "gold_recall@1": 0.40},
        "hybrid": {"status": "done", "gold_recall@1": 0.60},
        "step1": {"status": "done", "gold_recall@1": 0.45, "train_seconds": 9, "teacher_stats": teacher,
                  "indicators": {SHARE: 0.9, "answer_rho_mean": 0.2}, "wall_seconds": 200.0,
                  # as the trainer logs it: paired_bootstrap names the difference "delta"
                  "pilot": {"answer_recall@1": {"delta": 0.05, "low": 0.01, "high": 0.09, "n": 300}, "seconds": 15.0}},
        # fused: dev picks the hybrid (0.7 > 0.5), so the outcome is 0.66 - the hybrid row's 0.60
        "step1-bm25-full-kl": {"status": "done", "gold_recall@1": 0.42, "train_seconds": 9, "teacher_stats": teacher,
                               "with_bm25": {"gold_recall@1": 0.66, "dev_recall@1": {"dense": 0.5, "hybrid": 0.7}}},
        # fused, but dev prefers the dense retriever: the outcome stays dense (0.47 - 0.40)
        "step1-full": {"status": "done", "gold_recall@1": 0.47, "train_seconds": 9, "teacher_stats": teacher,
                       "with_bm25": {"gold_recall@1": 0.66, "dev_recall@1": {"dense": 0.8, "hybrid": 0.7}}},
        "answer-bm25-full-inbatch": {"status": "done", "gold_recall@1": 0.5, "train_seconds": 9,
                                     "target_stats": {"target": "answer"}, "teacher_stats": teacher,
                                     "indicators": {SHARE: 0.9, "answer_rho_mean": 0.2}},
        "step2": {"status": "done", "gold_recall@1": 0.44, "train_seconds": 9,
                  # an older run: rates without a paired interval
                  "teacher_stats": {"teacher_top1_gold": 0.5, "retriever_top1_gold": 0.5, "questions": 100}},
        "supervised": {"status": "done", "gold_recall@1": 0.7, "train_seconds": 9},
        "questions-only": {"status": "error", "error": "killed"},
        "bm25": {"status": "done", "gold_recall@1": 0.55},
    }
    path = tmp_path / name
    path.write_text(json.dumps({"rows": rows, **({"indicator_split": indicator_split} if indicator_split else {})}))
    return str(path)


def test_collect_reads_each_distillation_with_its_start_and_final_system(tmp_path):
    rows = {d.row: d for d in collect(results_file(tmp_path, "r.json"), "set", variant="seed 1")}
    assert sorted(rows) == sorted(f"{k} (seed 1)" for k in ("step1", "step1-bm25-full-kl", "step1-full",
                                                           "answer-bm25-full-inbatch", "step2"))
    step1 = rows["step1 (seed 1)"]
    assert (step1.start, step1.final, step1.gain, step1.final_gain) == ("offtheshelf", "dense", 0.05, 0.05)
    assert step1.indicators == {SHARE: 0.9, "answer_rho_mean": 0.2}
    assert (step1.pilot["difference"], step1.pilot["low"]) == (0.05, 0.01)
    assert step1.pilot_share == pytest.approx(15 / 200)
    fused = rows["step1-bm25-full-kl (seed 1)"]
    assert (fused.final, fused.gain, fused.final_gain) == ("fused", 0.02, 0.06)
    assert rows["step1-full (seed 1)"].final == "dense" and rows["step1-full (seed 1)"].final_gain == 0.07
    # answer match reads no reader: no indicators or teacher check stand for it
    answer = rows["answer-bm25-full-inbatch (seed 1)"]
    assert answer.indicators is None and answer.gold_check is None and answer.answer_check is None
    step2 = rows["step2 (seed 1)"]
    assert step2.start == "step1" and step2.gain == -0.01
    margin = 2 * math.sqrt(0.5 * 0.5 / 100)  # diagnose's old unpaired margin, by hand: 0.1
    assert step2.gold_check["low"] == pytest.approx(-margin) and step2.gold_check["high"] == pytest.approx(margin)


def test_indicators_measured_on_test_questions_are_left_out(tmp_path):
    rows = collect(results_file(tmp_path, "old.json", indicator_split=None), "set")
    assert all(d.indicators is None for d in rows)
    assert any(d.gold_check for d in rows)  # the teacher check (training questions) still stands


def test_skip_leaves_out_a_row_another_file_holds(tmp_path):
    rows = collect(results_file(tmp_path, "r.json"), "set", skip=("step1",))
    assert "step1" not in {d.row for d in rows}


def test_interval_verdict_and_scoring():
    assert interval_verdict(interval(0.001, 0.2)) == "effective"
    assert interval_verdict(interval(-0.2, 0.0)) == "ineffective"
    assert interval_verdict(interval(-0.1, 0.1)) == "uncertain"
    assert interval_verdict(None) is None
    assert right("effective", True) and right("ineffective", False)
    assert not right("uncertain", True) and not right("uncertain", False)  # uncertain counts as wrong
    assert not right("effective", False)
    assert point_verdict(interval(-0.01, 0.03)) == "effective" and point_verdict(interval(-0.03, 0.01)) == "ineffective"
    assert point_verdict(None) is None


def record(data: str, row: str, gain: float, pilot=None, check=None, indicators=None) -> Distillation:
    # the gold check as a run logs it, for diagnose's own rule (combined_verdict)
    stats = None if check is None else {"teacher_top1_gold": 0.5 + check["difference"], "retriever_top1_gold": 0.5,
                                        "questions": 100, "paired": check}
    return Distillation(data=data, row=row, source="x", start="offtheshelf", gain=gain, final="dense",
                        final_gain=gain, indicators=indicators, gold_check=check, answer_check=None, pilot=pilot,
                        teacher_stats=stats)


def test_diagnose_verdict_follows_the_pilot_then_caps_with_the_check():
    thresholds = {"effective_share": 0.25, "effective_rho": 0.09, "ineffective_share": 0.10, "ineffective_rho": 0.055}
    strong = {SHARE: 0.9, "answer_rho_mean": 0.2}
    assert diagnose_verdict(record("a", "r", 0.1, pilot=interval(-0.3, -0.1), indicators=strong), thresholds) == "ineffective"
    assert diagnose_verdict(record("a", "r", 0.1, indicators=strong), thresholds) == "effective"
    # a teacher below its first stage overrides the indicators; a small shortfall caps them
    assert diagnose_verdict(record("a", "r", 0.1, check=interval(-0.2, -0.01), indicators=strong),
                            thresholds) == "ineffective"
    assert diagnose_verdict(record("a", "r", 0.1, check=interval(-0.2, 0.1), indicators=strong), thresholds) == "uncertain"
    # neither the indicators nor a pilot: diagnose's own inputs were not measured, so it is not judged
    assert diagnose_verdict(record("a", "r", 0.1, check=interval(0.1, 0.2)), thresholds) is None


def test_diagnose_point_reads_an_undecided_pilot_by_its_centre_not_the_indicators():
    thresholds = {"effective_share": 0.25, "effective_rho": 0.09, "ineffective_share": 0.10, "ineffective_rho": 0.055}
    strong = {SHARE: 0.9, "answer_rho_mean": 0.2}
    # an undecided pilot leaning down: diagnose falls back to the indicators (effective), diagnose_point does not
    leaning_down = record("a", "r", 0.1, pilot=interval(-0.05, 0.03), indicators=strong)
    assert diagnose_verdict(leaning_down, thresholds) == "effective"
    assert diagnose_point_verdict(leaning_down, thresholds) == "ineffective"
    assert diagnose_point_verdict(record("a", "r", 0.1, pilot=interval(-0.03, 0.05)), thresholds) == "effective"
    # a decisive pilot decides both; without a pilot both follow the indicators
    assert diagnose_point_verdict(record("a", "r", 0.1, pilot=interval(0.01, 0.05)), thresholds) == "effective"
    assert diagnose_point_verdict(record("a", "r", 0.1, indicators=strong), thresholds) == "effective"
    assert diagnose_point_verdict(record("a", "r", 0.1, check=interval(0.1, 0.2)), thresholds) is None


def test_leave_one_out_counts_by_hand():
    up, down, unsure = interval(0.05, 0.1), interval(-0.1, -0.05), interval(-0.1, 0.1)
    rows = [record("a", "a1", 0.05, pilot=up), record("a", "a2", 0.05, pilot=unsure),
            record("a", "a3", 0.00, pilot=down),
            record("b", "b1", 0.00, pilot=up), record("b", "b2", -0.02, pilot=down),
            record("c", "c1", 0.00, check=down)]
    loo = leave_one_out(rows, fitter=lambda train: {})
    pilot = loo["predictors"]["pilot"]
    # right: a1 (up, gained), a3 (down, not), b2 (down, not); wrong: a2 (uncertain), b1 (up, did not gain)
    assert (pilot["rows"], pilot["right"], pilot["wrong"]) == (5, 3, 2)
    assert pilot["data_sets"] == ["a", "b"]
    assert pilot["accuracy"] == pytest.approx(3 / 5)
    # majority guess: held out a, the others (b1, b2, c1) did not gain -> "ineffective": right on a3 only;
    # held out b, the others gained 2 of 4 (a1, a2 against a3, c1) -> a tie -> "ineffective": right on b1, b2
    assert pilot["majority_right"] == 3
    assert loo["folds"]["a"]["majority_guess"] == "ineffective" and loo["folds"]["b"]["gained"] == 0
    assert "a: a2 said uncertain" in pilot["failures"][0]
    # the point reading decides a2 by its centre (0.0: not a rise -> ineffective; a2 gained): wrong again
    point = loo["predictors"]["pilot_point"]
    assert (point["rows"], point["right"]) == (5, 3) and "a: a2 said ineffective" in point["failures"][0]
    assert loo["predictors"]["gold_check"]["rows"] == 1 and loo["predictors"]["gold_check"]["right"] == 1
    # diagnose judged on the five rows with a pilot (c1 has none): the pilot decides a1, a3, b1, b2 (3 right);
    # a2's pilot is uncertain and nothing else was measured, so diagnose abstains: wrong
    judged = on_pilot_rows(rows, loo["calls"])
    assert (judged["rows"], judged["right"], judged["data_sets"]) == (5, 3, ["a", "b"])
    assert judged["accuracy"] == pytest.approx(3 / 5)


def test_baselines_stand_in_for_untrained_rows_a_file_did_not_run(tmp_path):
    full = results_file(tmp_path, "full.json")
    partial = json.loads(open(full).read())
    for key in ("offtheshelf", "hybrid"):
        del partial["rows"][key]
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    # without the zero-shot row only Step 2 (started from Step 1) has a gain to measure
    assert [d.row for d in collect(tmp_path / "partial.json", "set")] == ["step2"]
    rows = {d.row: d for d in collect(tmp_path / "partial.json", "set", baselines=full)}
    assert rows["step1"].final_gain == 0.05 and rows["step1-bm25-full-kl"].final_gain == 0.06


def test_pilot_cost_by_hand():
    rows = [record("a", f"r{i}", 0.0) for i in range(3)]
    rows = [Distillation(**{**r.__dict__, "pilot_seconds": s, "row_seconds": 100.0}) for r, s in zip(rows, (5, 20, 8))]
    assert pilot_cost(rows) == {"rows": 3, "median": 0.08, "max": 0.2, "within_0.10": 2, "contended_rows": 0}
    assert pilot_cost([record("a", "r", 0.0)]) == {"rows": 0, "contended_rows": 0}
    # a row whose run shared the machine with other work is kept out of the figures, and counted apart
    rows[1] = Distillation(**{**rows[1].__dict__, "timing_contended": True})
    assert pilot_cost(rows) == {"rows": 2, "median": (0.05 + 0.08) / 2, "max": 0.08, "within_0.10": 2,
                                "contended_rows": 1}


def test_table_shows_each_predictors_figure_and_call(tmp_path):
    rows = collect(results_file(tmp_path, "a.json"), "a") + collect(results_file(tmp_path, "b.json"), "b")
    loo = leave_one_out(rows)
    text = table(rows, loo["calls"])
    step1 = next(line for line in text.splitlines() if line.startswith("| a | step1 |"))
    assert "+0.050 [+0.010, +0.090] eff" in step1  # the pilot, as logged
    assert "+0.100 [+0.020, +0.180] eff" in step1  # the gold teacher check
    assert step1.endswith("| dense | +0.050 (gained) | 0.07 |")  # outcome and the pilot's share 15 / 200


def test_bad_results_files_name_the_file_line_and_field(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"rows": {\n  "step1": }\n}')
    with pytest.raises(InputError) as err:
        collect(broken, "set")
    assert err.value.path == str(broken) and err.value.line == 2
    not_grid = tmp_path / "list.json"
    not_grid.write_text("[1, 2]")
    with pytest.raises(InputError) as err:
        collect(not_grid, "set")
    assert err.value.field == "rows"
    with pytest.raises(InputError) as err:
        collect(tmp_path / "missing.json", "set")
    assert err.value.path == str(tmp_path / "missing.json")


@pytest.mark.parametrize(("where", "value", "field"), [
    (("step1", "gold_recall@1"), "0.45", "rows.step1.gold_recall@1"),
    (("step1", "pilot", "answer_recall@1", "low"), None, "rows.step1.pilot.answer_recall@1.low"),
    (("step1", "teacher_stats", "paired", "high"), float("nan"), "rows.step1.teacher_stats.paired.high"),
    (("step1", "indicators", "answer_rho_mean"), [0.1], "rows.step1.indicators.answer_rho_mean"),
    (("offtheshelf", "gold_recall@1"), True, "rows.offtheshelf.gold_recall@1"),
])
def test_a_bad_field_is_named(tmp_path, where, value, field):
    path = results_file(tmp_path, "r.json")
    result = json.loads(open(path).read())
    node = result["rows"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    (tmp_path / "r.json").write_text(json.dumps(result, allow_nan=True))
    with pytest.raises(InputError) as err:
        collect(path, "set")
    assert err.value.path == path and err.value.field == field


def test_sources_file_is_read_in_order_and_bad_entries_are_named(tmp_path):
    a, b = results_file(tmp_path, "a.json"), results_file(tmp_path, "b.json")
    sources = tmp_path / "sources.json"
    sources.write_text(json.dumps({"sources": [{"results": a, "data": "a"},
                                               {"results": b, "data": "b", "variant": "v", "skip": ["step2"]}]}))
    rows = read_sources(sources)
    assert [d.data for d in rows] == ["a"] * 5 + ["b"] * 4 and "step2 (v)" not in {d.row for d in rows}
    sources.write_text(json.dumps({"sources": [{"results": a, "data": "a", "timing_contended": True}]}))
    assert all(d.timing_contended for d in read_sources(sources))
    for entry, field in (({"data": "a"}, "sources[0].results"), ({"results": a, "data": ""}, "sources[0].data"),
                         ({"results": a, "data": "a", "skip": "step2"}, "sources[0].skip"),
                         ({"results": a, "data": "a", "timing_contended": "yes"}, "sources[0].timing_contended")):
        sources.write_text(json.dumps({"sources": [entry]}))
        with pytest.raises(InputError) as err:
            read_sources(sources)
        assert err.value.path == str(sources) and err.value.field == field


def test_collect_checks_the_pilots_time_estimate_against_its_run(tmp_path):
    """A row whose run directory sits beside the results: its pilot's estimate of the full loop and
    what that loop took, by hand (attnrag.train.timing's estimator on a hand-written log)."""
    from attnrag.analysis.validation import time_estimates

    path = results_file(tmp_path, "r.json")
    run = tmp_path / "runs" / "step1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"distill_steps": 10, "eval_every": None}))
    log = [{"time": 0.0, "stage": "distill", "event": "targets", "questions": 40},
           # pilot: first step at 3 (1 s a step: preparation 2 s), steps at 3, 4, 5; the pilot event at 6
           *({"time": 3.0 + i, "stage": "pilot", "step": i + 1, "loss": 1.0} for i in range(3)),
           {"time": 6.0, "stage": "distill", "event": "pilot", "questions": 8, "seconds": 6.0},
           # the full loop: 10 steps of 1.2 s after 9 s of preparation, then its evaluation
           *({"time": 6.0 + 10.2 + 1.2 * i, "stage": "distill", "step": i + 1, "loss": 1.0} for i in range(10)),
           {"time": 6.0 + 10.2 + 10.8 + 1.0, "stage": "distill", "step": 10, "event": "eval"}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    rows = {d.row: d for d in collect(path, "set")}
    got = rows["step1"].time_estimate
    estimated, actual = 2.0 * 40 / 8 + 1.0 * 10, 10.2 + 10.8 + 1.0  # preparation x 5 + 10 steps; 22 s taken
    assert got["estimated_seconds"] == pytest.approx(estimated) and got["actual_seconds"] == pytest.approx(actual)
    assert rows["step1-full"].time_estimate is None  # no pilot, no run directory
    summary = time_estimates(list(rows.values()))
    assert summary["rows"] == 1 and summary["median_ratio"] == round(estimated / actual, 3)
    # the same row marked as timed on a shared machine: listed apart, not counted
    marked = {d.row: d for d in collect(path, "set", timing_contended=["step1"])}
    assert marked["step1"].timing_contended and not marked["step1-full"].timing_contended
    apart = time_estimates(list(marked.values()))
    assert apart["rows"] == 0 and apart["contended"] == [f"set step1: {estimated / actual:.2f}"]
    assert summary["within"] == 1 and summary["outside"] == []  # 20 / 22 = 0.91
    (run / "config.json").write_text(json.dumps({"distill_steps": "ten"}))
    with pytest.raises(InputError, match="config.json"):
        collect(path, "set")
    (run / "config.json").write_text(json.dumps({"distill_steps": 10, "eval_every": 2.5}))
    with pytest.raises(InputError) as err:
        collect(path, "set")
    assert err.value.field == "eval_every" and err.value.path.endswith("config.json")


def test_teacher_choices_by_hand():
    def row(name, pilot_diff, final, source="s1", start="offtheshelf"):
        pilot = {"difference": pilot_diff, "low": pilot_diff - 0.05, "high": pilot_diff + 0.05}
        return Distillation(data="a", row=name, source=source, start=start, gain=0.0, final="fused", final_gain=0.0,
                            indicators=None, gold_check=None, answer_check=None, pilot=pilot, final_recall=final)
    rows = [row("attn", 0.05, 0.60), row("answer", 0.10, 0.65), row("gated", 0.08, 0.605),
            row("other-file", 0.20, 0.10, source="s2"),  # alone in its file: no pair
            row("step2", 0.30, 0.10, start="step1")]  # started elsewhere: not compared with these
    got = teacher_choices(rows)
    # attn-answer: pilot -0.05, test -0.05 (right); attn-gated: test -0.005, level; answer-gated: pilot +0.02,
    # test +0.045 (right)
    assert (got["pairs"], got["right"], got["level_pairs"]) == (2, 2, 1)
    assert got["top"] == {"groups": 1, "right": 1, "failures": []}
    assert got["same_final"] == {"pairs": 2, "right": 2}  # every final fused here
    mixed = [*rows[:2], Distillation(**{**asdict(rows[2]), "final": "dense"})]
    assert teacher_choices(mixed)["same_final"] == {"pairs": 1, "right": 1}  # attn-answer only: gated's pairs mix
    rows[1] = row("answer", 0.01, 0.65)  # now the pilot prefers gated, then attn: both pairs with answer wrong
    got = teacher_choices(rows)
    assert (got["pairs"], got["right"]) == (2, 0) and len(got["failures"]) == 2
    assert got["top"]["right"] == 0 and "gated" in got["top"]["failures"][0]


def _run_with_teacher_and_pilot(tmp_path) -> str:
    """A results file whose step1 run directory logs a teacher pass (40 questions, 8 of them reused
    from a cache, 16 s: 0.5 s a question) and a pilot on 8 questions, then a full loop of 10 steps."""
    path = results_file(tmp_path, "r.json")
    run = tmp_path / "runs" / "step1"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"distill_steps": 10, "eval_every": None, "distill_batch_size": 32,
                                                 "n_passages": 5}))
    log = [{"time": 0.0, "stage": "distill", "event": "teacher_start", "questions": 40, "cached": 8},
           {"time": 16.0, "stage": "distill", "event": "teacher", "questions": 40},
           {"time": 16.0, "stage": "distill", "event": "targets", "questions": 40},
           *({"time": 19.0 + i, "stage": "pilot", "step": i + 1, "loss": 1.0} for i in range(3)),
           {"time": 22.0, "stage": "distill", "event": "pilot", "questions": 8, "seconds": 6.0},
           *({"time": 22.0 + 10.2 + 1.2 * i, "stage": "distill", "step": i + 1, "loss": 1.0} for i in range(10)),
           {"time": 22.0 + 10.2 + 10.8 + 1.0, "stage": "distill", "step": 10, "event": "eval"}]
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    rows = json.loads((tmp_path / "r.json").read_text())
    rows["rows"]["step1"]["pilot"]["questions"] = 8
    # a row whose teacher scores were all another row's (a shared cache): it pays no pass of its own
    rows["rows"]["step1-bm25-full-kl"]["pilot"] = {**rows["rows"]["step1"]["pilot"], "questions": 16}
    (tmp_path / "r.json").write_text(json.dumps(rows))
    shared = tmp_path / "runs" / "step1-bm25-full-kl"
    shared.mkdir(parents=True)
    (shared / "config.json").write_text(json.dumps({"distill_steps": 10, "n_passages": 5}))
    (shared / "metrics.jsonl").write_text(json.dumps({"time": 0.0, "stage": "distill", "event": "teacher_start",
                                                      "questions": 40, "cached": 40}) + "\n" + json.dumps(
        {"time": 0.1, "stage": "distill", "event": "teacher", "questions": 40}) + "\n")
    return path


def test_the_pilots_cost_counts_its_own_teacher_pass(tmp_path):
    path = _run_with_teacher_and_pilot(tmp_path)
    step1 = {d.key: d for d in collect(path, "set")}["step1"]
    # 16 s over the 32 questions scored (8 were reused) = 0.5 s a question, x the pilot's 8
    assert step1.pilot_teacher_seconds == pytest.approx(4.0)
    assert step1.pilot_share == pytest.approx((15.0 + 4.0) / 200.0)  # the results row's pilot: 15 s of 200
    # the shared-cache row: a pilot run alone would pay its own slice, at the file's rate (0.5 s) x 16
    assert {d.key: d for d in collect(path, "set")}["step1-bm25-full-kl"].pilot_teacher_seconds == pytest.approx(8.0)


def test_a_pilot_rerun_alone_replaces_the_rows_own(tmp_path):
    from attnrag.analysis.validation import read_pilots, with_pilots

    path = _run_with_teacher_and_pilot(tmp_path)
    rerun = tmp_path / "pilots" / "exp-step1"
    rerun.mkdir(parents=True)
    # the re-run: 3 steps of 0.5 s at 4 questions a step where the full run takes 32, preparation 1 s
    log = [{"time": 0.0, "stage": "distill", "event": "targets", "questions": 40},
           {"time": 0.5, "stage": "distill", "event": "pilot_dev_retrieved", "questions": 100},
           *({"time": 2.0 + 0.5 * i, "stage": "pilot", "step": i + 1, "loss": 1.0} for i in range(3)),
           {"time": 3.5, "stage": "distill", "event": "pilot", "questions": 8, "batch_size": 4, "seconds": 3.5}]
    (rerun / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in log) + "\n")
    pilot = {"event": "pilot", "questions": 8, "seconds": 3.5,
             "answer_recall@1": {"delta": -0.02, "low": -0.05, "high": 0.01, "n": 100}}
    lines = [{"results": path, "row": "step1", "run": "/elsewhere/exp/runs/step1", "pilot": pilot}]
    pilots_file = tmp_path / "pilots" / "pilots.jsonl"
    pilots_file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    pilots = read_pilots(pilots_file)
    assert pilots[(path, "step1")]["pilot_run"] == "exp-step1"  # derived where the line predates the field
    rows = {d.key: d for d in with_pilots(collect(path, "set"), pilots)}
    step1 = rows["step1"]
    assert step1.pilot_rerun and not rows["step1-full"].pilot_rerun
    assert (step1.pilot["difference"], step1.pilot["low"], step1.pilot["high"]) == (-0.02, -0.05, 0.01)
    # the full run re-costed with this pilot: 200 - 15 + 3.5; the teacher over its 8 questions: 4 s
    assert step1.row_seconds == pytest.approx(188.5) and step1.pilot_share == pytest.approx((3.5 + 4.0) / 188.5)
    # its estimate of the row's full loop: preparation (2.0 - 0.5 - 0.5 = 1 s) x 40/8 + 10 steps x 0.5 s x 32/4
    got = step1.time_estimate
    assert got["estimated_seconds"] == pytest.approx(1.0 * 5 + 0.5 * 8 * 10)
    assert got["actual_seconds"] == pytest.approx(10.2 + 10.8 + 1.0)
    # tied_only: the re-run trained a query tower (no config saying otherwise), so the row keeps its own
    assert not {d.key: d for d in with_pilots(collect(path, "set"), pilots, tied_only=True)}["step1"].pilot_rerun
    (rerun / "config.json").write_text(json.dumps({"retriever_training": "full"}))
    assert {d.key: d for d in with_pilots(collect(path, "set"), pilots, tied_only=True)}["step1"].pilot_rerun
    pilots_file.write_text(json.dumps({**lines[0], "pilot": {**pilot, "seconds": "slow"}}) + "\n")
    with pytest.raises(InputError) as err:
        read_pilots(pilots_file)
    assert err.value.line == 1 and "pilot.seconds" in err.value.field and err.value.path.endswith("pilots.jsonl")
