"""The CLI: every command has --help, and bad input ends in one line naming the field, exit code 2."""

from __future__ import annotations

import json
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


# ------------------------------------------------------------------ options generated from the configs
def _click_command(*path: str):
    import typer.main

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path, config", [(("train",), "TrainConfig"), (("demo",), "PaperConfig"),
                                          (("experiment", "paper"), "PaperConfig")])
def test_every_config_field_is_an_option_documented_by_the_field(path, config):
    """The command's options are the config's fields (nested ones flattened), each with the field's help."""
    from attnrag.experiment.config import PaperConfig
    from attnrag.options import option_specs
    from attnrag.train.config import TrainConfig

    cls = {"TrainConfig": TrainConfig, "PaperConfig": PaperConfig}[config]
    params = {opt: p for p in _click_command(*path).params for opt in p.opts}
    # the demo is a preset of the paper grid: every field but the row selection and the FiD row's
    skipped = {"--rows", "--teachers"}
    for spec in option_specs(cls):
        if path == ("demo",) and (spec.flag in skipped or spec.flag.startswith("--fid-")):
            continue
        assert spec.flag in params, f"{spec.flag} ({'.'.join(spec.path)}) is not an option of {' '.join(path)}"
        assert params[spec.flag].help.startswith(spec.help)


def test_option_specs_refuse_an_undocumented_field():
    from dataclasses import dataclass, field

    from attnrag.options import option, option_specs

    @dataclass
    class Documented:
        steps: int = option(3, help="how many")

    @dataclass
    class Undocumented:
        steps: int = option(3, help="how many")
        rate: float = field(default=0.1)

    assert [s.flag for s in option_specs(Documented)] == ["--steps"]
    with pytest.raises(TypeError, match="Undocumented.rate has no help"):
        option_specs(Undocumented)


def test_train_options_reach_the_config_nested_and_over_a_config_file(tmp_path, monkeypatch):
    """CLI values land in TrainConfig (nested teacher / prompt fields included) and override a config
    file field by field; options not given keep the file's values."""
    import json

    import attnrag.train.trainer as trainer_module

    seen = {}

    class FakeTrainer:
        def __init__(self, config, resume=False, progress=True):
            seen["config"] = config

        def run(self):
            return {"ok": True}

    monkeypatch.setattr(trainer_module, "Trainer", FakeTrainer)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"data": str(tmp_path), "teacher": {"teacher": "attn", "aggregation": "mean"},
                                  "reader_steps": 9, "tau_gold": 0.05}))
    result = runner.invoke(app, ["train", "--config", str(config), "--out", str(tmp_path / "run"),
                                 "--teacher-topk-tokens", "3", "--prompt-max-passage-tokens", "32",
                                 "--similarity", "dot", "--no-scale-by-dim", "--reader-steps", "4"])
    assert result.exit_code == 0, result.output
    cfg = seen["config"]
    assert (cfg.teacher.teacher, cfg.teacher.aggregation, cfg.teacher.topk_tokens) == ("attn", "mean", 3)
    assert cfg.prompt.max_passage_tokens == 32 and cfg.prompt.max_answer_tokens == 24
    assert (cfg.retriever_similarity, cfg.scale_by_dim, cfg.reader_steps, cfg.tau_gold) == ("dot", False, 4, 0.05)


def test_demo_and_paper_options_reach_their_configs(tmp_path, monkeypatch):
    import attnrag.experiment.commands as commands

    seen = {}
    monkeypatch.setattr(commands, "run_demo", lambda out, quick, config, progress: seen.setdefault(
        "demo", config) and {"demo_table": "t"})
    monkeypatch.setattr(commands, "run_paper_experiment", lambda out, data, budget, config, progress: seen.setdefault(
        "paper", config) and {"table": "t"})
    result = runner.invoke(app, ["demo", "--quick", "--out", str(tmp_path / "d"), "--reader-steps", "7",
                                 "--reader", "gemma3-270m"])
    assert result.exit_code == 0, result.output
    assert (seen["demo"].size, seen["demo"].train.reader_steps, seen["demo"].train.reader) == ("small", 7, "gemma3-270m")
    assert seen["demo"].rows == ("offtheshelf", "offtheshelf-distill", "step1", "reader")
    result = runner.invoke(app, ["experiment", "paper", "--out", str(tmp_path / "p"), "--rows", "step1,step2",
                                 "--distill-steps", "11", "--distractors", "extra.jsonl"])
    assert result.exit_code == 0, result.output
    cfg = seen["paper"]
    assert (cfg.rows, cfg.train.distill_steps) == (("step1", "step2"), 11)
    assert cfg.train.distractors == str((__import__("pathlib").Path("extra.jsonl")).resolve())
    # the rows set their own target: it is no option of the grid
    result = runner.invoke(app, ["experiment", "paper", "--out", str(tmp_path / "p"), "--target", "answer"])
    assert result.exit_code != 0 and "No such option" in result.output


def test_every_option_of_every_command_has_help():
    import typer.main

    missing = []

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, path + [name])
        if not hasattr(command, "commands"):
            missing.extend(f"{' '.join(path)} {p.name}" for p in command.params if not getattr(p, "help", None))

    walk(typer.main.get_command(app), [])
    assert not missing, missing


def test_the_command_line_starts_without_importing_torch():
    """The options are generated from torch-free config modules, so `attnrag --help` stays quick."""
    code = "import sys, attnrag.cli; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_failed_paper_row_makes_the_command_exit_non_zero(tmp_path, monkeypatch):
    import attnrag.experiment.commands as commands

    failed = {"table": "t", "order": ["step1", "step2"],
              "rows": {"step1": {"status": "done"}, "step2": {"status": "failed", "error": "boom"}}}
    monkeypatch.setattr(commands, "run_paper_experiment", lambda out, data, budget, config, progress: failed)
    result = runner.invoke(app, ["experiment", "paper", "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "step2" in result.output
    failed["rows"]["step2"]["status"] = "done"
    assert runner.invoke(app, ["experiment", "paper", "--out", str(tmp_path / "p")]).exit_code == 0


def test_resume_refuses_options_it_would_ignore(tmp_path):
    result = runner.invoke(app, ["train", "--resume", "--out", str(tmp_path / "run"), "--distill-steps", "5"])
    from attnrag.errors import InputError

    assert isinstance(result.exception, InputError) and result.exception.field == "distill_steps"
    assert "ignored" in str(result.exception)


def test_api_train_keeps_an_explicit_none_over_the_config_file(tmp_path, monkeypatch):
    import attnrag.api as api
    import attnrag.train.trainer as trainer_module

    seen = {}

    class FakeTrainer:
        def __init__(self, config, resume=False, progress=True):
            seen["config"] = config
            self.indicator_hook = None

        def run(self):
            return {}

    monkeypatch.setattr(trainer_module, "Trainer", FakeTrainer)
    file = tmp_path / "cfg.json"
    file.write_text(json.dumps({"data": "d", "out": str(tmp_path / "o"), "train_questions": 100}))
    api.train(config=file, train_questions=None)
    assert seen["config"].train_questions is None


def test_diagnose_takes_the_teacher_options_training_takes(monkeypatch, tmp_path):
    """The options diagnose recommends (shuffled orders, aggregation, K) are its own, generated from
    DiagnoseConfig and TeacherConfig, and reach the diagnosis unchanged."""
    from typer.testing import CliRunner

    from attnrag import api, cli
    from attnrag.analysis.config import DiagnoseConfig

    seen = {}

    def fake(reader, data, **kwargs):
        seen.update(kwargs)
        return {"message": "ok", "decided_by": "indicators"}

    monkeypatch.setattr(api, "diagnose", fake)
    result = CliRunner().invoke(cli.app, ["diagnose", "--reader", "r", "--data", str(tmp_path / "dev.jsonl"),
                                          "--teacher-shuffle-orders", "4", "--teacher-aggregation", "topk",
                                          "--n-passages", "5", "--n", "50"])
    assert result.exit_code == 0, result.output
    config = seen["config"]
    assert isinstance(config, DiagnoseConfig) and (config.n, config.n_passages) == (50, 5)
    assert (config.teacher.shuffle_orders, config.teacher.aggregation, config.teacher.teacher) == (4, "topk", "attn-norm")
    assert "decided by: indicators" in result.output
    assert DiagnoseConfig().n_passages == 3  # the K the verdict thresholds were fitted at
