"""``attnrag experiment compare``: any two rows, dense or fused, paired question by question."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from attnrag.cli import app
from attnrag.errors import InputError
from attnrag.evaluate.bootstrap import paired_bootstrap
from attnrag.experiment.compare import compare_rows, resolve_row


def _experiment(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "passages.jsonl").write_text("".join(json.dumps({"id": f"p{i}", "title": "", "text": f"text {i}"}) + "\n"
                                                 for i in range(6)))
    (data / "test.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "question": "?", "answers": ["x"],
                                                         "gold_passage_ids": [f"p{i}"]}) + "\n" for i in range(6)))
    out = tmp_path / "exp"
    (out / "predictions").mkdir(parents=True)
    dev = {"dense": 0.4, "hybrid": 0.5, "bm25": 0.3, "weight": 0.3}
    rows = {"a": {"status": "done", "gold_recall@1": 0.5, "with_bm25": {"dev_recall@1": dev, "gold_recall@1": 0.8}},
            "b": {"status": "done", "gold_recall@1": 0.2, "with_bm25": {"dev_recall@1": {**dev, "hybrid": 0.4},
                                                                         "gold_recall@1": 0.3}},
            "c": {"status": "failed"}}
    (out / "results.json").write_text(json.dumps({"data": str(data), "rows": rows, "n_retrieval_test": 6}))
    tops = {"a": [1, 1, 1, 0, 0, 0], "a+bm25": [1, 1, 1, 1, 1, 0], "b": [0, 1, 0, 0, 0, 0], "b+bm25": [1, 0, 0, 0, 0, 0]}
    for key, hits in tops.items():
        lines = [json.dumps({"id": f"q{i}", "retrieved": [f"p{i}" if h else "p9", f"p{(i + 1) % 6}"]})
                 for i, h in enumerate(hits)]
        (out / "predictions" / f"{key}.retrieval.jsonl").write_text("\n".join(lines) + "\n")
    return out, tops


def test_any_two_rows_paired_by_hand(tmp_path):
    out, tops = _experiment(tmp_path)
    assert resolve_row(json.loads((out / "results.json").read_text()), "a@final") == "a+bm25"  # dev: hybrid wins
    assert resolve_row(json.loads((out / "results.json").read_text()), "b@final") == "b"  # dev: a tie keeps dense
    got = compare_rows(out, [("a@final", "b@final"), ("a", "b+bm25")], ks=(1,))["pairs"]
    expected = paired_bootstrap(np.array(tops["a+bm25"], float), np.array(tops["b"], float))
    assert got[0]["gold_recall@1"]["delta"] == pytest.approx(5 / 6 - 1 / 6) == pytest.approx(expected["delta"])
    assert (got[0]["gold_recall@1"]["low"], got[0]["gold_recall@1"]["high"]) == (expected["low"], expected["high"])
    assert got[1]["gold_recall@1"]["a"] == pytest.approx(0.5) and got[1]["gold_recall@1"]["b"] == pytest.approx(1 / 6)


def test_rows_of_two_experiments_on_the_same_questions(tmp_path):
    """--b-out: the B row comes from another experiment over the same data and test questions (one
    run with another teacher temperature against the grid's answer-match row)."""
    import shutil

    out, tops = _experiment(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(out, other)
    (other / "predictions" / "b.retrieval.jsonl").write_text((out / "predictions" / "a.retrieval.jsonl").read_text())
    got = compare_rows(out, [("a", "b")], ks=(1,), b_out=other)
    assert got["pairs"][0]["gold_recall@1"]["delta"] == 0.0 and got["b_experiment"] == str(other)
    results = json.loads((other / "results.json").read_text())
    (other / "results.json").write_text(json.dumps({**results, "n_retrieval_test": 5}))
    with pytest.raises(InputError, match="same questions"):
        compare_rows(out, [("a", "b")], b_out=other)



def test_two_experiments_with_copies_of_the_same_data_pair(tmp_path):
    """Two experiments that each generated the same world (same seed) into their own OUT/world hold
    the same test questions in two directories: they pair; a changed question or gold id does not."""
    import shutil

    out, _ = _experiment(tmp_path)
    other = tmp_path / "other"
    shutil.copytree(out, other)
    shutil.copytree(tmp_path / "data", tmp_path / "data2")
    results = json.loads((other / "results.json").read_text())
    (other / "results.json").write_text(json.dumps({**results, "data": str(tmp_path / "data2")}))
    got = compare_rows(out, [("a", "a")], ks=(1,), b_out=other)
    assert got["pairs"][0]["gold_recall@1"]["delta"] == 0.0
    test = tmp_path / "data2" / "test.jsonl"
    test.write_text(test.read_text().replace('"gold_passage_ids": ["p3"]', '"gold_passage_ids": ["p4"]'))
    with pytest.raises(InputError, match="same questions"):
        compare_rows(out, [("a", "a")], b_out=other)

def test_bad_rows_and_files_are_named(tmp_path):
    out, _ = _experiment(tmp_path)
    with pytest.raises(InputError, match="top 2 passages"):  # each row saved 2 ids: recall@5 is not pairable
        compare_rows(out, [("a", "b")], ks=(5,))
    with pytest.raises(InputError, match="no finished row 'c'"):
        compare_rows(out, [("a", "c")])
    with pytest.raises(InputError, match="KEY@final"):
        compare_rows(out, [("a@best", "b")])
    (out / "predictions" / "b.retrieval.jsonl").write_text('{"id": "q0"}\n')
    with pytest.raises(InputError) as err:
        compare_rows(out, [("a", "b")])
    assert err.value.field == "retrieved" and "b.retrieval.jsonl" in str(err.value)


def test_the_command_prints_and_writes(tmp_path):
    out, _ = _experiment(tmp_path)
    result = CliRunner().invoke(app, ["experiment", "compare", "--out", str(out), "--pair", "a@final:b",
                                      "--k", "1", "--write", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    assert "a@final - b: gold_recall@1 0.833 - 0.167 = +0.667" in result.output
    written = json.loads((tmp_path / "c.json").read_text())
    assert written["pairs"][0]["a_key"] == "a+bm25" and "provenance" in written


def test_the_target_grid_pairs_each_row_with_answer_match(tmp_path):
    from attnrag.experiment.grid import target_grid
    from attnrag.experiment.report import format_target_grid

    out, tops = _experiment(tmp_path)
    results = json.loads((out / "results.json").read_text())
    renamed = {"a": "gated-bm25-full-kl", "b": "answer-bm25-full-inbatch"}
    results["rows"] = {renamed.get(k, k): v for k, v in results["rows"].items()}
    results["rows"]["gated-bm25-full-kl"]["target_stats"] = {"favourite_is_gold": 0.7, "favourite_holds_answer": 0.9,
                                                             "left_out": 0, "questions": 6}
    for old, new in renamed.items():
        for suffix in ("", "+bm25"):
            (out / "predictions" / f"{old}{suffix}.retrieval.jsonl").rename(
                out / "predictions" / f"{new}{suffix}.retrieval.jsonl")
    (out / "results.json").write_text(json.dumps(results))
    grid = target_grid(out, results)
    gated = grid["rows"]["gated-bm25-full-kl"]
    assert (gated["target"], gated["loss"], gated["final"]) == ("answer-gated", "candidates", "hybrid")
    assert gated["vs_answer_match"]["delta"] == pytest.approx(5 / 6 - 1 / 6)  # a+bm25 against b (dense on dev)
    assert "vs_answer_match" not in grid["rows"]["answer-bm25-full-inbatch"]
    assert grid["winner_on_dev"] == "gated-bm25-full-kl"  # the answer-match row uses no reader
    assert "**gated-bm25-full-kl**" in format_target_grid(grid)
    assert not gated["needs_gold_ids"]
    # the supervised ceiling: compared with answer match like every row, never the winner, even when ahead on dev
    results["rows"]["supervised-bm25-full-inbatch"] = {
        **results["rows"]["gated-bm25-full-kl"],
        "with_bm25": {**results["rows"]["gated-bm25-full-kl"]["with_bm25"],
                      "dev_recall@1": {**results["rows"]["gated-bm25-full-kl"]["with_bm25"]["dev_recall@1"], "hybrid": 0.99,
                                       "dense": 0.5}}}
    results["order"] = [*results.get("order", list(results["rows"])), "supervised-bm25-full-inbatch"]
    for suffix in ("", "+bm25"):
        (out / "predictions" / f"supervised-bm25-full-inbatch{suffix}.retrieval.jsonl").write_text(
            (out / "predictions" / f"gated-bm25-full-kl{suffix}.retrieval.jsonl").read_text())
    (out / "results.json").write_text(json.dumps(results))
    grid = target_grid(out, results)
    ceiling = grid["rows"]["supervised-bm25-full-inbatch"]
    assert (ceiling["target"], ceiling["needs_gold_ids"], ceiling["uses_reader"]) == ("gold", True, False)
    assert ceiling["vs_answer_match"]["delta"] == pytest.approx(gated["vs_answer_match"]["delta"])
    assert grid["winner_on_dev"] == "gated-bm25-full-kl"
    assert "gold (gold labels: the ceiling)" in format_target_grid(grid)


def test_summarize_recomputes_the_comparisons_of_a_stopped_experiment(tmp_path):
    """A directory whose run stopped before its end: the summary adds the paired comparisons from
    the saved retrievals, writes table.md, and records its own provenance."""
    from attnrag.experiment.config import PaperConfig
    from attnrag.experiment.paper import summarize_experiment

    out, tops = _experiment(tmp_path)
    results = json.loads((out / "results.json").read_text())
    dev = {"dense": 0.4, "hybrid": 0.5, "bm25": 0.3, "weight": 0.3}
    results["rows"] = {
        "offtheshelf": {"status": "done", "gold_recall@1": 0.5, "with_bm25": {"dev_recall@1": dev, "gold_recall@1": 0.8}},
        "bm25": {"status": "done", "gold_recall@1": 1 / 6},
        "hybrid": {"status": "done", "gold_recall@1": 5 / 6, "dev_recall@1": dev},
        "gated-bm25-full-kl": {"status": "done", "gold_recall@1": 0.5,
                               "with_bm25": {"dev_recall@1": {**dev, "hybrid": 0.6}, "gold_recall@1": 0.8},
                               "target_stats": {"favourite_is_gold": 0.7, "left_out": 0, "questions": 6}},
        "answer-bm25-full-inbatch": {"status": "done", "gold_recall@1": 0.2,
                                     "with_bm25": {"dev_recall@1": dev, "gold_recall@1": 0.3}},
    }
    for key, row in results["rows"].items():  # what every finished row records
        row.update({"label": key, "reader_kind": "decoder", "teacher": "-", "wall_seconds": 1.0})
    results.update({"order": list(results["rows"]), "config": PaperConfig().to_dict(), "n_test": 6,
                    "n_indicator_questions": 0, "budget": "quick", "machine": "test"})
    (out / "results.json").write_text(json.dumps(results))
    copies = {"offtheshelf": "a", "offtheshelf+bm25": "a+bm25", "bm25": "b", "hybrid": "a+bm25",
              "gated-bm25-full-kl": "a", "gated-bm25-full-kl+bm25": "a+bm25",
              "answer-bm25-full-inbatch": "b", "answer-bm25-full-inbatch+bm25": "b+bm25"}
    for new, old in copies.items():
        (out / "predictions" / f"{new}.retrieval.jsonl").write_text(
            (out / "predictions" / f"{old}.retrieval.jsonl").read_text())
    summary = summarize_experiment(out)
    assert summary["first_stage_intervals"]["picked_on_dev"] == "hybrid"
    gated = summary["target_grid"]["rows"]["gated-bm25-full-kl"]
    assert gated["vs_answer_match"]["delta"] == pytest.approx(5 / 6 - 1 / 6)  # a+bm25 against b (dense on dev)
    assert gated["vs_best_first_stage"]["delta"] == pytest.approx(0.0)  # the same retrievals as the hybrid
    assert "## Target and loss" in (out / "table.md").read_text()
    assert len(json.loads((out / "results.json").read_text())["summaries"]) == 1
