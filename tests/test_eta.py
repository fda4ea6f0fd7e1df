"""The demo's expected wall time: measured row shares scaled by this machine's finished rows."""

from __future__ import annotations

import pytest

from attnrag.experiment.config import DEMO_ROW_KEYS, PaperConfig
from attnrag.experiment.eta import DemoClock, Measured, comparable, expected_seconds, load_timings


def measured(**rows) -> Measured:
    return Measured(precision="fp32", total_seconds=sum(rows.values()) + 10, rows=rows, machine="m", commit="abc1234",
                    config=PaperConfig.demo().to_dict())


def test_the_rest_is_scaled_by_how_much_slower_this_machine_ran_the_finished_rows():
    m = measured(a=100.0, b=300.0, c=600.0)
    # this machine took 150 s on a (1.5x the measured 100 s): b and c take 1.5 x 900 s
    assert expected_seconds(m, {"a": 150.0}, ["b", "c"]) == pytest.approx(1350.0)
    # two rows finished: the rate is their sum over the measured sum, (150 + 300) / (100 + 300)
    assert expected_seconds(m, {"a": 150.0, "b": 300.0}, ["c"]) == pytest.approx(600.0 * 450 / 400)
    assert expected_seconds(m, {"x": 10.0}, ["c"]) is None  # no measured share to scale by


def test_the_clock_speaks_only_for_the_measured_configuration():
    said: list[str] = []
    m = measured(offtheshelf=100.0, step1=400.0)
    clock = DemoClock(PaperConfig.demo(precision="fp32").to_dict(), "fp32", ["offtheshelf", "step1"], said.append,
                      timings={"fp32": m})
    clock.start([])
    assert "the rows left are 100% of it" in said[0] and "abc1234" in said[0]
    assert clock.row_done("offtheshelf", 200.0) == pytest.approx(800.0)
    assert "13 min more" in said[1] and "17 min for these rows" in said[1]
    quiet: list[str] = []
    other = DemoClock(PaperConfig.demo(reader_steps=10).to_dict(), "fp32", ["offtheshelf"], quiet.append,
                      timings={"fp32": m})
    other.start([])
    assert other.row_done("offtheshelf", 5.0) is None and quiet == []
    assert DemoClock(PaperConfig.demo().to_dict(), "bf16", ["offtheshelf"], quiet.append,
                     timings={"fp32": m}).row_done("offtheshelf", 5.0) is None


def test_the_shipped_timings_are_of_todays_demo():
    """A change to the demo preset must be re-measured (scripts/demo_timings.py), not quoted stale; with
    no measured demo shipped for a precision, the clock says nothing rather than guess."""
    timings = load_timings()
    for m in timings.values():
        assert comparable(PaperConfig.demo().to_dict(), m), m.precision
        assert set(m.rows) == set(DEMO_ROW_KEYS) and m.total_seconds >= sum(m.rows.values())
    for precision in {"fp32", "bf16"} - set(timings):
        said: list[str] = []
        clock = DemoClock(PaperConfig.demo().to_dict(), precision, list(DEMO_ROW_KEYS), said.append)
        clock.start([])
        assert clock.row_done(DEMO_ROW_KEYS[0], 100.0) is None and said == []
