"""Faults: SIGKILL during an index build and during training loses nothing, and --resume finishes
the run with the same metrics as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import save_tiny_bert, save_tiny_reader, small_world

CLI = [sys.executable, "-m", "attnrag"]


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("kill-assets")
    return {"world": small_world(root / "world"), "reader": save_tiny_reader(root / "reader"),
            "retriever": save_tiny_bert(root / "bert")}


def wait_for(predicate, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_sigkill_during_index_build_leaves_no_partial_index(assets, tmp_path):
    from attnrag.data.formats import load_passages, write_passages
    from attnrag.data.records import Passage

    base = load_passages(assets["world"] / "passages.jsonl")
    many = [Passage(f"{p.id}-{i}", p.title, p.text * 3) for i in range(60) for p in base]  # 18k passages
    write_passages(tmp_path / "many.jsonl", many)
    out = tmp_path / "index"
    proc = subprocess.Popen(CLI + ["index", "build", "--passages", str(tmp_path / "many.jsonl"), "--out", str(out),
                                   "--encoder", str(assets["retriever"]), "--batch-size", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Kill while the index is being written: its temporary directory exists.
    wait_for(lambda: any(tmp_path.glob(".index.*.tmp")), timeout=300, proc=proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if out.exists():  # the kill landed after the rename: then the index must be complete
        from attnrag.retrieval.index import PassageIndex

        assert len(PassageIndex.load(out)) == len(many)
    # The next build succeeds and cleans the stale temporary directory.
    small = tmp_path / "small.jsonl"
    write_passages(small, base)
    subprocess.run(CLI + ["index", "build", "--passages", str(small), "--out", str(out), "--encoder",
                          str(assets["retriever"])], check=True, capture_output=True)
    assert (out / "index.faiss").is_file()
    assert not list(tmp_path.glob(".index.*.tmp"))


def train_cmd(assets: dict, out: Path) -> list[str]:
    return CLI + ["train", "--setting", "finetuned-distill", "--data", str(assets["world"]), "--out", str(out),
                  "--reader", str(assets["reader"]), "--retriever", str(assets["retriever"]),
                  "--config", str(out.parent / f"{out.name}.json")]


def write_config(path: Path) -> None:
    path.write_text(json.dumps({"n_passages": 3, "train_questions": 12, "reader_steps": 6, "reader_batch_size": 2,
                                "distill_steps": 6, "distill_batch_size": 4, "save_every": 2, "eval_every": 4,
                                "eval_questions": 6, "indicator_questions": 0, "reader_trainable_layers": 2,
                                "seed": 5}))


def losses(run: Path) -> list[tuple]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], round(r["loss"], 5)) for r in rows if "loss" in r]


@pytest.mark.parametrize("kill_stage,kill_step", [("reader", 3)])
def test_sigkill_during_training_then_resume_gives_the_same_metrics(assets, tmp_path, kill_stage, kill_step):
    straight, broken = tmp_path / "straight", tmp_path / "broken"
    for run in (straight, broken):
        write_config(tmp_path / f"{run.name}.json")
    subprocess.run(train_cmd(assets, straight), check=True, capture_output=True)

    proc = subprocess.Popen(train_cmd(assets, broken), stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def reached() -> bool:
        path = broken / "metrics.jsonl"
        return path.is_file() and any(
            r.get("stage") == kill_stage and r.get("step", 0) >= kill_step
            for r in map(json.loads, [x for x in path.read_text().splitlines() if x.endswith("}")]))

    wait_for(reached, timeout=300, proc=proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (broken / "run.json").is_file() or not json.loads((broken / "run.json").read_text())["final"]
    resumed = subprocess.run(CLI + ["train", "--resume", "--out", str(broken)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert losses(broken) == losses(straight)
