"""The wall-time estimator (attnrag.train.timing) against hand computations on hand-written logs."""

import json

import pytest

from attnrag.errors import InputError
from attnrag.train.timing import (LoopTimes, estimate_loop_seconds, evaluations, in_run_estimate, loop_times,
                                  read_metrics)


def _log(tied: bool) -> list[dict]:
    """A cached distillation's log: teacher pass, targets for 40 questions, a 3-step pilot on 8 of
    them (2 s a step), its re-encoding (tied: 5 s), the pilot event, then 4 full steps (2.5 s a step)."""
    rows = [{"time": 0.0, "event": "first_stage"},
            {"time": 1.0, "stage": "distill", "event": "teacher_start", "questions": 40},
            {"time": 21.0, "stage": "distill", "event": "teacher", "questions": 40},
            {"time": 22.0, "stage": "distill", "event": "targets", "questions": 40}]
    # pilot: its first step ends at 25 (preparation 25 - 22 - one step = 1 s), then 27 and 29
    rows += [{"time": 25.0 + 2.0 * i, "stage": "pilot", "step": i + 1, "loss": 1.0} for i in range(3)]
    t = 29.0
    if tied:
        rows.append({"time": t + 5.0, "event": "index_refresh", "passages": 100})
        t += 5.0
    t += 1.0  # the after-retrieval
    rows.append({"time": t, "stage": "distill", "event": "pilot", "questions": 8, "seconds": t - 22.0})
    pilot_at = t
    # full loop: preparation 10 s, then 4 steps of 2.5 s
    rows += [{"time": pilot_at + 12.5 + 2.5 * i, "stage": "distill", "step": i + 1, "loss": 1.0} for i in range(4)]
    end = pilot_at + 12.5 + 7.5
    if tied:
        rows.append({"time": end + 6.0, "event": "index_refresh", "passages": 100})
        end += 6.0
    rows.append({"time": end + 0.5, "stage": "distill", "step": 4, "event": "eval"})
    return rows


@pytest.mark.parametrize("tied", [False, True])
def test_loop_times_by_hand(tied):
    rows = _log(tied)
    pilot = loop_times(rows, "pilot", "targets")
    assert pilot == LoopTimes("pilot", 3, 2.0, 1.0, 5.0 if tied else None)
    full = loop_times(rows, "distill", "pilot")
    assert full.steps == 4 and full.step_seconds == pytest.approx(2.5) and full.prepare_seconds == pytest.approx(10.0)
    assert full.refresh_seconds == (pytest.approx(6.0) if tied else None)
    assert loop_times(rows, "reader", "targets") is None


@pytest.mark.parametrize("tied", [False, True])
def test_in_run_estimate_by_hand(tied):
    rows = _log(tied)
    got = in_run_estimate(rows, distill_steps=4, eval_every=None)
    # preparation 1 s x 40/8 questions + 4 steps x 2 s + one re-encoding of 5 s where tied
    expected = 1.0 * 5 + 2.0 * 4 + (5.0 if tied else 0.0)
    pilot_at = next(r["time"] for r in rows if r.get("event") == "pilot")
    actual = rows[-1]["time"] - pilot_at
    assert got["estimated_seconds"] == pytest.approx(expected)
    assert got["actual_seconds"] == pytest.approx(actual)
    assert got["ratio"] == pytest.approx(round(expected / actual, 3))
    assert got["refreshes"] == (1 if tied else 0)
    # no pilot in the log: no estimate
    assert in_run_estimate([r for r in rows if r.get("stage") != "pilot"], 4, None) is None


def test_the_pilots_dev_retrieval_is_not_scaled_where_logged():
    """A pilot that logs ``pilot_dev_retrieved`` (runs since 2026-12-07): its preparation starts there,
    so the dev retrieval before it is not scaled up with the full run's questions."""
    rows = _log(tied=False)
    at = next(i for i, r in enumerate(rows) if r.get("stage") == "pilot")
    rows.insert(at, {"time": 22.5, "stage": "distill", "event": "pilot_dev_retrieved", "questions": 300})
    pilot = loop_times(rows, "pilot", ("targets", "pilot_dev_retrieved"))
    assert pilot.prepare_seconds == pytest.approx(25.0 - 22.5 - 2.0)  # retrieval 0.5 s; preparation 0.5 s
    got = in_run_estimate(rows, distill_steps=4, eval_every=None)
    assert got["estimated_seconds"] == pytest.approx(0.5 * 40 / 8 + 2.0 * 4)
    rows[at]["time"] = 24.0  # a step longer than what is left: preparation clamped at 0, never negative
    assert loop_times(rows, "pilot", ("targets", "pilot_dev_retrieved")).prepare_seconds == 0.0


def test_evaluations_count_the_last_step_once():
    assert evaluations(40, 15) == 3  # 15, 30, 40
    assert evaluations(30, 15) == 2  # 15, 30
    assert evaluations(150, None) == 1
    assert evaluations(0, 10) == 0


def test_estimate_needs_a_step_time():
    assert estimate_loop_seconds(LoopTimes("pilot", 1, None, None, None), 10, 2.0, 0) is None
    assert estimate_loop_seconds(LoopTimes("pilot", 3, 0.5, 1.0, None), 10, 2.0, 4) == 1.0 * 2 + 0.5 * 10


def test_read_metrics_names_the_bad_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"time": 1.0}) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"metrics.jsonl:2"):
        read_metrics(path)
    path.write_text(json.dumps({"time": "soon"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"metrics.jsonl:1"):
        read_metrics(path)


def test_a_pilots_pool_encoding_and_batch_are_scaled_to_the_full_run():
    """A pilot since 2026-12-07: its tied tower re-encodes a dev pool (``pilot_pool_encoded``: 20 of the
    corpus' 100 passages in 1 s, so a corpus re-encoding is 5 s) and it takes 8 questions a step where
    the full run takes 32: each full step is costed as 4 pilot steps."""
    rows = _log(tied=True)
    at = next(i for i, r in enumerate(rows) if r.get("event") == "index_refresh")
    rows[at] = {"time": 29.0 + 1.0, "event": "pilot_pool_encoded", "passages": 20, "corpus": 100}
    pilot = loop_times(rows, "pilot", "targets")
    assert pilot.refresh_seconds == pytest.approx(5.0)
    event = next(r for r in rows if r.get("event") == "pilot")
    event["batch_size"] = 8
    got = in_run_estimate(rows, distill_steps=4, eval_every=None, distill_batch_size=32)
    assert got["estimated_seconds"] == pytest.approx(1.0 * 5 + 2.0 * (32 / 8) * 4 + 5.0)
    # an older pilot (no batch_size in its event) ran at the full run's batch: not scaled
    del event["batch_size"]
    assert in_run_estimate(rows, 4, None, 32)["estimated_seconds"] == pytest.approx(1.0 * 5 + 2.0 * 4 + 5.0)
