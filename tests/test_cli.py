"""The CLI: every command has --help, and bad input ends in one line naming the field, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from attnrag.cli import app
from attnrag.evaluate.metrics import exact_match, f1_score, normalize_answer

runner = CliRunner()
COMMANDS = ["models", "data", "index", "retrieve", "evaluate", "train", "analyze", "diagnose", "demo",
            "experiment"]


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


@pytest.mark.parametrize("command", [["models", "fetch"], ["models", "list"], ["data", "synth"],
                                     ["index", "build"], ["retrieve"], ["evaluate", "retrieval"],
                                     ["evaluate", "qa"], ["train"], ["analyze"], ["diagnose"], ["demo"],
                                     ["experiment", "paper"]])
def test_every_command_has_help(command):
    result = runner.invoke(app, command + ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "attnrag", *args], capture_output=True, text=True, env=env)


def test_bad_option_is_one_line_naming_the_field(tmp_path):
    result = run_cli("train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--reader-lr", "-1")
    assert result.returncode == 2
    assert "reader_lr" in result.stderr and "positive" in result.stderr
    assert "Traceback" not in result.stderr


def test_diagnose_rejects_an_unknown_teacher_before_loading_anything(tmp_path):
    result = run_cli("diagnose", "--reader", "smollm2-135m-instruct", "--data", str(tmp_path / "q.jsonl"),
                     "--teacher", "oracle")
    assert result.returncode == 2
    assert "--teacher" in result.stderr and "oracle" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_model_names_the_model_and_the_fix(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"id": "1", "title": "t", "text": "x"}\n')
    result = run_cli("index", "build", "--passages", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "i"),
                     "--encoder", "no-such-model")
    assert result.returncode == 2
    assert "no-such-model" in result.stderr and not (tmp_path / "i").exists()


def test_missing_model_says_how_to_provision_it(tmp_path):
    import os

    (tmp_path / "p.jsonl").write_text('{"id": "1", "title": "t", "text": "x"}\n')
    env = dict(os.environ, ATTNRAG_HOME=str(tmp_path / "empty-cache"))
    result = run_cli("index", "build", "--passages", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "i"),
                     env=env)
    assert result.returncode == 2
    assert "attnrag models fetch minilm-l6-v2" in result.stderr


def test_bad_k_list_is_rejected():
    from attnrag.cli import parse_ks
    from attnrag.errors import InputError

    for bad in ["0", "1,x", "", "-5"]:
        with pytest.raises(InputError):
            parse_ks(bad)
    assert parse_ks("1,5,10") == [1, 5, 10]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.lists(st.text(max_size=30), min_size=1, max_size=4))
def test_answer_normalisation_never_crashes(prediction, golds):
    normalize_answer(prediction)
    em = exact_match(prediction, golds)
    f1 = f1_score(prediction, golds)
    assert em in (0.0, 1.0) and 0.0 <= f1 <= 1.0
    if em == 1.0:
        assert f1 == 1.0


def test_atomic_outputs_get_ordinary_permissions(tmp_path):
    import os

    from attnrag.io import atomic_dir, write_json

    umask = os.umask(0o022)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
    finally:
        os.umask(umask)
    assert (tmp_path / "r.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
