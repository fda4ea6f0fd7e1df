"""The real-data path end to end: a small slice of ``../shared/data/squad-open-dev`` plus real Wikipedia
distractor passages, through ``attnrag experiment paper`` (CLI, ``--distractors``, ``--rows``,
``--config``) with tiny random-weight models. It checks the plumbing (distractors in the index, gold
recall, the teacher's accuracy, the retrieval metrics on more questions than EM), not the numbers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_reader
from typer.testing import CliRunner

from attnrag.cli import app
from attnrag.errors import InputError
from attnrag.evaluate.metrics import exact_match, f1_score
from attnrag.experiment.config import PaperConfig
from attnrag.retrieval.store import load_indexed_corpus

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "squad-open-dev").is_dir(), reason="../shared/data is not available")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def squad_slice(tmp_path_factory) -> tuple[Path, Path]:
    """The first 12 train / 4 dev / 10 test questions, their gold paragraphs as the corpus, and 40 Wikipedia
    distractor passages."""
    source = SHARED / "squad-open-dev"
    out = tmp_path_factory.mktemp("squad_slice")
    sizes = {"train": 12, "dev": 4, "test": 10}
    keep: set[str] = set()
    for split, n in sizes.items():
        rows = _read(source / f"{split}.jsonl")[:n]
        keep.update(pid for row in rows for pid in row["gold_passage_ids"])
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    passages = [p for p in _read(source / "passages.jsonl") if p["id"] in keep]
    (out / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in passages), encoding="utf-8")
    distractors = out.parent / "wiki40.jsonl"
    lines = (SHARED / "wiki-sample" / "flashrag-wiki18-100w-sample.jsonl").read_text(encoding="utf-8").splitlines()
    distractors.write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    return out, distractors


@needs_shared
def test_squad_slice_with_distractors_through_the_cli(tmp_path, tiny_bert_dir, squad_slice):
    data, distractors = squad_slice
    # a config file in the flat form written before the grid composed TrainConfig: read with its old meanings
    reader = save_tiny_reader(tmp_path / "reader")
    options = {"reader": str(reader), "retriever": str(tiny_bert_dir), "n_passages": 3, "distill_passages": 4,
               "max_passage_tokens": 48, "train_questions": 8, "reader_steps": 1, "reader_batch_size": 2,
               "reader_trainable_layers": 2, "distill_questions": 6, "distill_steps": 2, "distill_batch_size": 4,
               "eval_questions": 4, "indicator_questions": 3, "max_new_tokens": 2, "train_eval_questions": 2}
    config = tmp_path / "real.json"
    config.write_text(json.dumps(options))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["experiment", "paper", "--out", str(out), "--data", str(data),
                                      "--distractors", str(distractors), "--config", str(config),
                                      "--rows", "offtheshelf,offtheshelf-distill,step1,step2"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "results.json").read_text())
    assert saved["order"] == ["offtheshelf", "offtheshelf-distill", "step1", "step2"]
    assert saved["n_test"] == 4 and saved["n_retrieval_test"] == 10
    assert saved["config"]["train"]["distractors"] == str(distractors)
    for key in saved["order"]:
        row = saved["rows"][key]
        assert row["status"] == "done", row.get("error")
        assert row["n_em_questions"] == 4 and row["n_retrieval_questions"] == 10
        assert row["n"] == 10 and row["n_with_gold"] == 10  # every retrieval number is over the wider set
        preds = [json.loads(line) for line in (out / "predictions" / f"{key}.jsonl").open()]
        assert row["em"] == pytest.approx(sum(exact_match(p["prediction"], p["answers"]) for p in preds) / len(preds))
        assert row["f1"] == pytest.approx(sum(f1_score(p["prediction"], p["answers"]) for p in preds) / len(preds))
        assert row["gold_recall@1"] <= row["gold_recall@5"] <= row["gold_recall@10"]
        if key != "offtheshelf":  # every trained row reports how often its teacher's top passage is gold,
            # which follows from its own teacher cache and the questions' gold ids
            cache = torch.load(out / "runs" / key / "teacher_cache.pt", weights_only=True)
            gold = {e["id"]: set(e["gold_passage_ids"]) for e in _read(data / "train.jsonl")}
            hits = [ids[int(torch.as_tensor(scores).argmax())] in gold[qid]
                    for qid, ids, scores in zip(cache["question_ids"], cache["candidate_ids"], cache["rows"])]
            assert row["teacher_stats"]["teacher_top1_gold"] == pytest.approx(sum(hits) / len(hits))
            run_cfg = json.loads((out / "runs" / key / "config.json").read_text())
            assert run_cfg["distractors"] == str(distractors) and run_cfg["distill_passages"] == 4
            assert run_cfg["prompt"]["max_passage_tokens"] == 48
    _, passages = load_indexed_corpus(out / "index")
    ids = set(passages)
    assert {"0", "39"} <= ids and any(i.startswith("sq-") for i in ids)  # real passages + Wikipedia distractors
    table = (out / "table.md").read_text()
    assert f"+ distractors `{distractors}`" in table
    teacher_cell = f"{saved['rows']['step1']['teacher_stats']['teacher_top1_gold']:.3f}"
    retriever_cell = f"{saved['rows']['step1']['teacher_stats']['retriever_top1_gold']:.3f}"
    assert any(line.startswith("| Fine-tuned distillation, Step 1") and f"| {teacher_cell} / {retriever_cell} |" in line
               for line in table.splitlines())
    # the base reader of offtheshelf-distill is evaluated with the run's prompt, not the default one
    from attnrag.evaluate.qa import load_system

    system = load_system(out / "runs" / "offtheshelf-distill")
    assert system.reader.prompt.max_passage_tokens == 48

    # a later call adds a row to the same experiment; the finished rows are kept, the calls are counted
    more = CliRunner().invoke(app, ["experiment", "paper", "--out", str(out), "--data", str(data),
                                    "--distractors", str(distractors), "--config", str(config),
                                    "--rows", "teacher-loop"])
    assert more.exit_code == 0, more.output
    again = json.loads((out / "results.json").read_text())
    assert again["order"] == ["offtheshelf", "offtheshelf-distill", "step1", "step2", "teacher-loop"]
    assert again["rows"]["teacher-loop"]["status"] == "done", again["rows"]["teacher-loop"].get("error")
    assert all(again["rows"][k] == saved["rows"][k] for k in saved["order"])
    assert [c["ran"] for c in again["calls"]] == [saved["order"], ["teacher-loop"]]
    assert again["total_wall_seconds"] == pytest.approx(sum(c["wall_seconds"] for c in again["calls"]), abs=0.2)
    assert "Step-1 reader, teacher loop" in (out / "table.md").read_text()
    # ... but not with other options
    other = dict(options, n_passages=2)
    config.write_text(json.dumps(other))
    refused = CliRunner().invoke(app, ["experiment", "paper", "--out", str(out), "--data", str(data),
                                       "--distractors", str(distractors), "--config", str(config)])
    assert refused.exit_code != 0 and "n_passages" in str(refused.exception)


def test_experiment_config_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"n_passages": 3,\n "reader_steps": }')
    done = subprocess.run([sys.executable, "-m", "attnrag", "experiment", "paper", "--out", str(tmp_path / "o"),
                           "--config", str(bad)], capture_output=True, text=True)
    assert done.returncode == 2 and f"{bad}:2" in done.stderr and "Traceback" not in done.stderr
    with pytest.raises(InputError, match="no_such_option"):
        PaperConfig.from_overrides("quick", {"no_such_option": 1}, source=bad)
    with pytest.raises(InputError, match="rows"):
        PaperConfig.from_overrides("quick", {"rows": ["step1", "step9"]}).validate()
    with pytest.raises(InputError, match="rows"):
        PaperConfig.from_overrides("quick", {"rows": "step1"}).validate()
    with pytest.raises(InputError, match="list of names"):
        PaperConfig.from_overrides("quick", {"teachers": "attn"}).validate()
    with pytest.raises(InputError, match="generate_batch_size"):
        PaperConfig.from_overrides("quick", {"generate_batch_size": 0}).validate()
    with pytest.raises(InputError, match="retrieval_questions"):
        PaperConfig.from_overrides("quick", {"em_questions": 50, "retrieval_questions": 10}).validate()
    with pytest.raises(InputError, match="retrieval_questions"):  # the same in a config written before the rename
        PaperConfig.from_overrides("quick", {"max_passage_tokens": 64, "eval_questions": 50,
                                             "retrieval_eval_questions": 10}).validate()
    with pytest.raises(InputError, match="reader_steps"):  # a training option is checked as TrainConfig checks it
        PaperConfig.from_overrides("quick", {"train": {"reader_steps": -1}}).validate()
    assert not (tmp_path / "o").exists()  # nothing was started


def test_committed_real_data_configs_are_valid():
    """The configurations behind docs/results/real/ still load (run.sh uses them as they are)."""
    configs = sorted((Path(__file__).resolve().parents[1] / "docs" / "results" / "real").glob("*/config.json"))
    assert [p.parent.name for p in configs] == ["covidqa-open", "nq-oracle-dev", "squad-open-dev", "tweetqa-open"]
    for path in configs:
        cfg = PaperConfig.from_overrides("quick", json.loads(path.read_text()), source=path).validate()
        assert cfg.train.teacher.aggregation == "topk"
        assert cfg.train.distill_passages == (10 if path.parent.name in ("tweetqa-open", "covidqa-open") else 5)
    with pytest.raises(InputError, match="aggregation"):
        PaperConfig.from_overrides("quick", {"teacher_aggregation": "median"}).validate()
