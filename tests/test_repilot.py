"""scripts/repilot.py: a finished row's configuration reduced to its pilot, as the row ran it."""

import importlib.util
import json
from pathlib import Path

from attnrag.train.config import TrainConfig

_SPEC = importlib.util.spec_from_file_location("repilot", Path(__file__).parents[1] / "scripts" / "repilot.py")
repilot = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(repilot)


def _run(path: Path, **fields) -> Path:
    path.mkdir(parents=True)
    cfg = TrainConfig(data=str(path.parent / "data"), out=str(path), pilot_batch_size=32, pilot_pool=0, **fields)
    (path / "config.json").write_text(json.dumps(cfg.to_dict()))
    return path


def test_a_fine_tuned_row_pilots_with_its_own_reader_and_a_step2_from_its_step1(tmp_path):
    step1 = _run(tmp_path / "runs" / "step1", setting="finetuned-distill", reader="base-reader", target="teacher")
    (step1 / "retriever").mkdir()
    (step1 / "run.json").write_text(json.dumps({"reader": "reader", "retriever": "retriever",
                                                "index": str(tmp_path / "index")}))
    got = repilot.pilot_config(step1, tmp_path / "out")
    today = TrainConfig(data="x")
    assert (got.setting, got.reader, got.retriever) == ("offtheshelf-distill", str(step1 / "reader"), "minilm-l6-v2")
    assert got.pilot_only and (got.pilot_batch_size, got.pilot_pool) == (today.pilot_batch_size, today.pilot_pool)
    assert got.out == str(tmp_path / "out") and got.target == "teacher"
    step2 = _run(tmp_path / "runs" / "step2", setting="finetuned-distill", init_run=str(step1))
    got = repilot.pilot_config(step2, tmp_path / "out2")
    assert got.init_run is None and got.reader == str(step2 / "reader")
    assert got.retriever == str((step1 / "retriever").resolve()) and got.index == str(tmp_path / "index")
    # a row that did not fine-tune a reader keeps its own reader, retriever and setting
    plain = _run(tmp_path / "runs" / "answer", setting="offtheshelf-distill", target="answer",
                 retriever_training="full")
    got = repilot.pilot_config(plain, tmp_path / "out3")
    assert (got.setting, got.reader, got.retriever_training, got.target) == (
        "offtheshelf-distill", "smollm2-135m-instruct", "full", "answer")


def test_only_the_pilots_options_can_be_set(tmp_path):
    import pytest

    from attnrag.errors import InputError

    run = _run(tmp_path / "runs" / "answer", target="answer")
    got = repilot.pilot_config(run, tmp_path / "out", {"pilot_steps": 12, "pilot_batch_size": 4})
    assert (got.pilot_steps, got.pilot_batch_size, got.pilot_pool) == (12, 4, TrainConfig(data="x").pilot_pool)
    with pytest.raises(InputError, match="only the pilot's options"):
        repilot.pilot_config(run, tmp_path / "out", {"distill_steps": 5})


def test_bad_files_are_named_with_their_line_and_field(tmp_path, monkeypatch):
    import sys

    import pytest

    out = tmp_path / "out"
    out.mkdir()
    (out / "pilots.jsonl").write_text(json.dumps({"results": "r.json", "row": "a"}) + "\n" + json.dumps({"row": 3}) + "\n")
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"rows": []}))
    monkeypatch.setattr(sys, "argv", ["repilot.py", "--out", str(out), f"{results}={tmp_path}"])
    with pytest.raises(SystemExit, match=r"pilots.jsonl:2, field 'results'"):
        repilot.main()
    (out / "pilots.jsonl").write_text(json.dumps({"results": "r.json", "row": "a"}) + "\n")
    with pytest.raises(SystemExit, match=r"results.json.*rows"):
        repilot.main()
