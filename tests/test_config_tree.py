"""One config tree: every option is declared once.

PaperConfig composes TrainConfig (which holds TeacherConfig and PromptConfig) instead of re-declaring
its fields; the other commands' configs share a name with another config only where this file's
allow-list says why. The test reads the fields of every option-declared dataclass in the package.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing

import attnrag
from attnrag.experiment.config import PaperConfig
from attnrag.options import option_specs

#: names declared by more than one config, each with the reason it is not one shared definition
ALLOWED_REPEATS = {
    "n_passages": "K passages read: the reader's K in training (TrainConfig) and the K a diagnosis or "
                  "analysis reads (DiagnoseConfig, AnalyzeConfig); separate commands with other defaults",
    "seed": "each config's own randomness: training order (TrainConfig), passage-order shuffles "
            "(TeacherConfig), subsets of a diagnosis or analysis",
    "teacher": "a TeacherConfig held by TrainConfig and DiagnoseConfig; the inner 'teacher' names the signal",
    "relatedness": "how answer-related tokens are found, by the experiment's indicators and by analyze",
    "n": "questions a command samples: analyze (1000, an offline analysis) and diagnose (200, a quick check); "
         "the same meaning with other defaults, on separate commands",
    "batch_size": "questions per batch of a command",
    "hybrid": "a FusionConfig held by TrainConfig (the hybrid first stage) and IndexConfig (index build)",
}


def option_configs() -> list[type]:
    """Every dataclass in attnrag whose fields are declared with attnrag.options.option."""
    found = {}
    for info in pkgutil.walk_packages(attnrag.__path__, "attnrag."):
        if info.name.endswith("__main__"):  # runs the command line
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional backend (e.g. CUDA-only) is not installed
            continue
        for obj in vars(module).values():
            if (isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == info.name
                    and dataclasses.fields(obj) and all("help" in f.metadata for f in dataclasses.fields(obj))):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def held_configs(cls: type) -> set[type]:
    """``cls`` and every config dataclass it holds, at any depth."""
    hints = typing.get_type_hints(cls)
    out = {cls}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out |= held_configs(hint)
    return out


def test_paper_config_declares_no_field_of_the_configs_it_holds():
    held = held_configs(PaperConfig) - {PaperConfig}
    assert {c.__name__ for c in held} >= {"TrainConfig", "TeacherConfig", "PromptConfig"}
    inner = {f.name for c in held for f in dataclasses.fields(c)}
    own = {f.name for f in dataclasses.fields(PaperConfig)}
    assert not own & inner, f"PaperConfig re-declares {sorted(own & inner)}: compose them through PaperConfig.train"


def test_a_name_repeated_across_configs_is_allowed_with_its_reason():
    configs = option_configs()
    assert len(configs) >= 6, [c.__name__ for c in configs]
    declared: dict[str, list[str]] = {}
    for cls in configs:  # a field inherited from a shared base (IndicatorOptions) is declared once, there
        for name in vars(cls).get("__annotations__", {}):
            declared.setdefault(name, []).append(cls.__name__)
    repeated = {name: owners for name, owners in declared.items() if len(owners) > 1}
    unexplained = {name: owners for name, owners in repeated.items() if name not in ALLOWED_REPEATS}
    assert not unexplained, f"declared by several configs without a reason in ALLOWED_REPEATS: {unexplained}"
    stale = sorted(set(ALLOWED_REPEATS) - set(repeated))
    assert not stale, f"ALLOWED_REPEATS lists names no longer repeated: {stale}"


def test_the_grid_command_line_is_the_composed_config():
    """``attnrag experiment paper``'s flags: TrainConfig's own flags (what a row sets excluded) and the
    grid's fields, one flag each; every flag's default is the grid's budget, not TrainConfig's."""
    specs = {s.flag: s for s in option_specs(PaperConfig)}
    assert specs["--reader-steps"].path == ("train", "reader_steps")
    assert specs["--teacher-aggregation"].path == ("train", "teacher", "aggregation")
    assert specs["--prompt-max-passage-tokens"].path == ("train", "prompt", "max_passage_tokens")
    assert specs["--n-passages"].default == 3  # the grid's, TrainConfig's is 5
    assert specs["--em-questions"].path == ("em_questions",)
    for row_set in ("--target", "--loss", "--setting", "--data", "--out", "--teacher", "--first-stage"):
        assert row_set not in specs, row_set


def test_a_row_is_data_and_its_needs_run_first():
    """The issue's case: selecting tied and BM25 rows of Step 1's reader brings Step 1, before them."""
    from attnrag.experiment.config import row_plan

    cfg = PaperConfig.quick(rows=("offtheshelf", "bm25", "hybrid", "step1-full", "step1-bm25-full", "answer-full",
                                  "answer-bm25-full"))
    keys = [r.key for r in row_plan(cfg)]
    assert keys == ["offtheshelf", "bm25", "hybrid", "step1", "step1-full", "answer-full", "step1-bm25-full",
                    "answer-bm25-full"]
    every = row_plan(cfg, select=False)
    for position, row in enumerate(every):  # a row's needs come earlier in the plan
        earlier = {r.key for r in every[:position]}
        assert set(row.needs) <= earlier, row.key
    by_key = {r.key: r for r in every}
    assert by_key["step2"].needs == ("step1",) and by_key["step2"].init_from == "step1"
    assert dict(by_key["answer-bm25-full-inbatch"].changes) == {
        "retriever_training": "full", "first_stage": "bm25", "target": "answer", "loss": "in-batch"}
    assert by_key["teacher-emdr"].changes[0][1].teacher == "emdr"
    assert by_key["bm25"].setting is None and by_key["bm25"].first_stage == "bm25"
    # one teacher pass: the loss, target and tower do not change the scores; the reader and candidates do
    pass_of = {k: r.teacher_pass for k, r in by_key.items()}
    assert pass_of["step1-bm25-full-kl"] == pass_of["step1-bm25-full-inbatch"] == pass_of["gated-drop-bm25-full-kl"]
    assert pass_of["step1-full"] == pass_of["step1"] != pass_of["step1-bm25-full"]
    assert pass_of["offtheshelf-distill"] != pass_of["step1"] and pass_of["questions-only"] != pass_of["step1"]
    assert pass_of["answer-bm25-full"] is None and pass_of["supervised"] is None and pass_of["offtheshelf"] is None
    assert pass_of["teacher-emdr"] != pass_of["step1"]


def test_a_directory_written_before_the_config_tree_is_the_same_experiment():
    """The TweetQA target grid's results.json (flat, written before PaperConfig composed TrainConfig)
    reads as the experiment its committed config.json describes, so the directory still resumes."""
    import json
    from pathlib import Path

    from attnrag.experiment.config import flat_config

    root = Path(__file__).resolve().parents[1] / "docs" / "results" / "real" / "tweetqa-open" / "targets"
    old = json.loads((root / "results.json").read_text())["config"]
    assert "train_seed" in old and "train" not in old  # the flat form
    now = PaperConfig.from_overrides("quick", json.loads((root / "config.json").read_text()))
    before, after = flat_config(PaperConfig.from_dict(old).to_dict()), flat_config(now.to_dict())
    assert {k for k in set(before) | set(after) if before.get(k) != after.get(k)} <= {"rows"}
