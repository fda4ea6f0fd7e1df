"""scripts/seed_targets.py: issue #41's target over seeds, on hand-written grids."""

import importlib.util
import json
from pathlib import Path

import pytest

from attnrag.errors import InputError

_SPEC = importlib.util.spec_from_file_location("seed_targets", Path(__file__).parents[1] / "scripts" / "seed_targets.py")
seed_targets = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(seed_targets)


def _row(final: float, first: tuple[float, float, float], answer: tuple[float, float, float] | None) -> dict:
    change = lambda d, lo, hi: {"delta": d, "low": lo, "high": hi, "n": 100}  # noqa: E731
    return {"final_gold_recall@1": final, "vs_best_first_stage": change(*first),
            **({"vs_answer_match": change(*answer)} if answer else {})}


def test_the_target_needs_every_seed_and_every_interval():
    grids = {
        "0": {"attn": _row(0.65, (0.04, 0.02, 0.06), (0.01, -0.01, 0.03)), "answer": _row(0.64, (0.03, 0.01, 0.05), None),
              "gated": _row(0.66, (0.05, 0.03, 0.07), (0.02, 0.005, 0.035))},
        "1": {"attn": _row(0.66, (0.02, 0.001, 0.04), (0.02, 0.01, 0.03)), "answer": _row(0.64, (0.03, 0.01, 0.05), None),
              "gated": _row(0.66, (0.03, 0.01, 0.05), (0.02, 0.01, 0.03))},
    }
    got = seed_targets.summarise(grids, min_gain=0.03)
    # attention: mean gain (0.04 + 0.02) / 2 = 0.03 meets 0.03, every interval above 0; against answer
    # match seed 0's interval reaches below 0: not met
    assert got["attn"]["mean_gain_vs_best_first_stage"] == pytest.approx(0.03)
    assert got["attn"]["target_vs_first_stage_met"] is True and got["attn"]["target_vs_answer_match_met"] is False
    assert got["gated"]["target_vs_answer_match_met"] is True
    assert got["answer"]["target_vs_answer_match_met"] is None  # it is the answer-match row
    # a seed without the row: missing, and the target cannot be met
    del grids["1"]["gated"]
    got = seed_targets.summarise(grids, min_gain=0.03)
    assert got["gated"]["missing_seeds"] == ["1"] and got["gated"]["target_vs_first_stage_met"] is False
    assert "not run" in seed_targets.markdown(got, ["0", "1"], 0.03)


def test_a_results_file_without_the_grid_is_named(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"rows": {}}))
    with pytest.raises(InputError, match="target_grid"):
        seed_targets.read_grid(str(tmp_path))


@pytest.mark.parametrize("row, field", [
    ({"vs_best_first_stage": {"delta": 0.1, "low": 0.0, "high": 0.2}}, "rows.attn.final_gold_recall@1"),
    (_row(0.6, (0.1, 0.0, 0.2), None) | {"vs_answer_match": {"delta": "0.1"}}, "rows.attn.vs_answer_match"),
    ("0.6", "rows.attn"),
    (_row(float("nan"), (0.1, 0.0, 0.2), None), "rows.attn.final_gold_recall@1"),
    (_row(0.6, (0.1, float("-inf"), 0.2), None), "rows.attn.vs_best_first_stage"),
    (_row(0.6, (0.1, 0.0, 0.2), None) | {"final_dev_recall@1": None}, "rows.attn.final_dev_recall@1"),
    (_row(0.6, (0.1, 0.0, 0.2), None) | {"needs_gold_ids": "yes"}, "rows.attn.needs_gold_ids"),
])
def test_a_malformed_grid_row_is_named_by_its_field(tmp_path, row, field):
    (tmp_path / "results.json").write_text(json.dumps({"target_grid": {"rows": {"attn": row}}}))
    with pytest.raises(InputError, match=field.replace(".", r"\.")):
        seed_targets.read_grid(str(tmp_path))
    (tmp_path / "results.json").write_text(json.dumps({"target_grid": {"rows": {"attn": _row(0.6, (0.1, 0.0, 0.2), None)}}}))
    assert seed_targets.read_grid(str(tmp_path))["attn"]["final_gold_recall@1"] == 0.6


def test_dev_picks_the_row_with_the_best_mean_dev_recall_over_every_seed():
    def row(dev: float, test: float) -> dict:
        return _row(test, (0.01, 0.0, 0.02), None) | {"final_dev_recall@1": dev}
    grids = {"0": {"attn": row(0.70, 0.64), "answer": row(0.71, 0.65), "gated": row(0.74, 0.66)},
             "1": {"attn": row(0.72, 0.65), "answer": row(0.70, 0.66)}}
    pick = seed_targets.dev_pick(seed_targets.summarise(grids, min_gain=0.03))
    # gated ran on seed 0 only: not compared. attn's mean 0.71 against answer's 0.705
    assert pick["row"] == "attn" and [r["row"] for r in pick["ranking"]] == ["attn", "answer"]
    assert pick["ranking"][1]["mean_test_gold_recall@1"] == pytest.approx(0.655)
    assert "Dev's pick" in seed_targets.markdown(seed_targets.summarise(grids, 0.03), ["0", "1"], 0.03)
    grids["1"]["gated"] = row(0.70, 0.60)  # now on both seeds: mean dev 0.72 leads
    assert seed_targets.dev_pick(seed_targets.summarise(grids, 0.03))["row"] == "gated"
    # the supervised ceiling (gold passage labels) is never picked, however high
    for seed in grids:
        grids[seed]["supervised"] = row(0.9, 0.8) | {"needs_gold_ids": True}
    assert seed_targets.dev_pick(seed_targets.summarise(grids, 0.03))["row"] == "gated"
    # a grid without dev figures picks nothing
    assert seed_targets.dev_pick(seed_targets.summarise({"0": {"attn": _row(0.6, (0.1, 0.0, 0.2), None)}}, 0.03)) is None
