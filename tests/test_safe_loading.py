"""Run files are data: loading a checkpoint or a teacher cache never runs code, and a damaged one is a
one-line error naming the file and the way out (never a traceback, never a silently restarted run)."""

from __future__ import annotations

import builtins
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnrag.errors import RunFileError
from attnrag.train.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    load_teacher_cache,
    rng_state,
    save_checkpoint,
    save_teacher_cache,
    set_rng_state,
    trainable_state,
)
from attnrag.train.config import TrainConfig
from attnrag.train.trainer import TEACHER_CACHE

CLI = [sys.executable, "-m", "attnrag"]


def real_checkpoint_state() -> dict:
    """What the trainer saves: trainable params, AdamW and LambdaLR states after a step, every RNG."""
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return {"stage": 1, "step": 4, "bad_steps": 0, "params": trainable_state(model),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


class RunsCode:
    """Unpickling this calls ``exec``, which writes a marker file: the attack that must not work."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


# ----------------------------------------------------------------------------------- the saved format
def test_checkpoint_loads_with_plain_weights_only_and_restores_every_rng(tmp_path):
    state = real_checkpoint_state()
    save_checkpoint(tmp_path, state)
    raw = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)  # no allowlist needed
    assert set(raw) == set(state)
    loaded = load_checkpoint(tmp_path)
    assert loaded["step"] == 4 and torch.equal(loaded["params"]["weight"], state["params"]["weight"])
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optimizer.load_state_dict(loaded["optimizer"])  # the optimizer and scheduler states are usable
    torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0).load_state_dict(loaded["scheduler"])
    set_rng_state(loaded["rng"])
    first = draws()
    set_rng_state(loaded["rng"])
    assert draws() == first


def test_checkpoint_from_before_the_safe_format_is_read_safely(tmp_path):
    """Older runs stored numpy's RNG state as a legacy tuple with an ndarray: still resumable."""
    state = real_checkpoint_state()
    random.seed(3)
    np.random.seed(3)
    torch.manual_seed(3)
    state["rng"] = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    expected = draws()
    torch.save(state, tmp_path / CHECKPOINT_NAME)
    with pytest.raises(pickle.UnpicklingError):  # it really needs more than the default allowlist
        torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    loaded = load_checkpoint(tmp_path)
    set_rng_state(loaded["rng"])
    assert draws() == expected


def test_teacher_cache_round_trip(tmp_path):
    path = tmp_path / TEACHER_CACHE
    cache = {"question_ids": ["q1", "q2"], "candidate_ids": [["a", "b"], ["b", "c"]],
             "rows": [torch.tensor([0.2, 0.8])], "answers": ["Paris"]}
    save_teacher_cache(path, cache)
    assert set(torch.load(path, weights_only=True)) == set(cache)  # no allowlist needed
    loaded = load_teacher_cache(path)
    assert set(loaded) == set(cache) and loaded["answers"] == ["Paris"]
    assert loaded["candidate_ids"] == cache["candidate_ids"] and torch.equal(loaded["rows"][0], cache["rows"][0])
    assert load_teacher_cache(tmp_path / "absent.pt") is None


# ----------------------------------------------------------------------------------- code is refused
@pytest.mark.parametrize("name", [CHECKPOINT_NAME, TEACHER_CACHE])
@pytest.mark.parametrize("writer", ["torch.save", "pickle", "torch legacy format"])
def test_a_file_whose_unpickling_runs_code_is_refused(tmp_path, name, writer):
    marker = tmp_path / "pwned"
    payload = {"stage": 0, "step": 1, "params": {}, "optimizer": {}, "scheduler": {}, "rng": RunsCode(marker),
               "question_ids": [], "candidate_ids": [], "rows": []}
    path = tmp_path / name
    if writer == "torch.save":
        torch.save(payload, path)
    elif writer == "torch legacy format":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(RunFileError) as err:
        load_checkpoint(tmp_path) if name == CHECKPOINT_NAME else load_teacher_cache(path)
    assert not marker.exists(), "loading ran the planted code"
    message = str(err.value)
    assert str(path) in message and "\n" not in message
    if writer != "pickle":  # torch's own formats name the global they refused
        assert "refused: loading it would call" in message and "exec" in message


# ----------------------------------------------------------------------------------- damaged files
def damaged(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated-head":
        path.write_bytes(data[:40])
    elif how == "truncated-half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "truncated-tail":
        path.write_bytes(data[:-30])
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif how == "not-a-checkpoint":
        torch.save([1, 2, 3], path)


HOW = ["empty", "truncated-head", "truncated-half", "truncated-tail", "garbage", "not-a-checkpoint"]


@pytest.mark.parametrize("how", HOW)
def test_damaged_checkpoint_is_one_line_naming_file_and_way_out(tmp_path, how):
    save_checkpoint(tmp_path, real_checkpoint_state())
    damaged(tmp_path / CHECKPOINT_NAME, how)
    with pytest.raises(RunFileError) as err:
        load_checkpoint(tmp_path)
    message = str(err.value)
    assert message.startswith(str(tmp_path / CHECKPOINT_NAME) + ": ") and "\n" not in message
    assert "start the run again with a new --out" in message


@pytest.mark.parametrize("how", HOW)
def test_damaged_teacher_cache_is_one_line_naming_file_and_way_out(tmp_path, how):
    path = tmp_path / TEACHER_CACHE
    save_teacher_cache(path, {"question_ids": ["q"] * 40, "candidate_ids": [["a", "b"]] * 40,
                              "rows": [torch.rand(2) for _ in range(40)]})
    damaged(path, how)
    with pytest.raises(RunFileError) as err:
        load_teacher_cache(path)
    message = str(err.value)
    assert message.startswith(str(path) + ": ") and "\n" not in message
    assert "delete it and --resume" in message


@pytest.mark.parametrize("name", [CHECKPOINT_NAME, TEACHER_CACHE])
def test_resume_on_a_truncated_run_file_stops_with_one_line_and_changes_nothing(tmp_path, name):
    run = tmp_path / "run"
    run.mkdir()
    TrainConfig(data=str(tmp_path / "data"), out=str(run)).save(run / "config.json")
    save_checkpoint(run, real_checkpoint_state())
    save_teacher_cache(run / TEACHER_CACHE, {"question_ids": ["q"], "candidate_ids": [["a"]],
                                             "rows": [torch.rand(1)]})
    damaged(run / name, "truncated-half")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = subprocess.run(CLI + ["train", "--resume", "--out", str(run)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"error: {run / name}: truncated or corrupted")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing restarted or rewritten
