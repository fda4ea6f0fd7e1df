"""Group ``train_step``: the cost of one optimiser step of each training setting, on the default models.

Each setting runs through attnrag's own :class:`~attnrag.train.trainer.Trainer` (the code ``attnrag
train`` runs) on the small synthetic world, for ``warmup + repeats`` steps; a step's time is the
wall time between consecutive step-log rows (retrieval where the setting does it per step, teacher
scoring, forward, backward, clipping, optimiser and scheduler step, the metrics line), and the
first ``warmup`` steps (optimiser-state allocation, first-call kernel set-up) are dropped.

``reader``
    reader fine-tuning, batch 4, K = 5 retrieved passages (default trainable layers: top 12 of 30).
``distill_cached``
    ``offtheshelf-distill`` with ``distill_mode=cached``: the retriever's query tower on cached
    teacher scores, batch 32. The teacher cache (one teacher pass per question, paid once before
    training) is timed separately.
``joint``
    retrieve, teacher-score, LM loss + distillation loss, both models step; batch 4, K = 5.

Model saving at the end of a stage is stubbed out (it is not part of a step). Also reported: the
demo's total wall time from ``demo-out/results.json`` when a demo has been run here, else from the
committed ``docs/results/demo/results.json`` (never runs it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

from _bench import REPO_ROOT, apply_threads, log, machine_info, quiet_transformers, summarize

FULL = {"world": "small", "warmup": 2, "repeats": 5, "n_passages": 5, "reader_batch_size": 4,
        "distill_batch_size": 32, "distill_questions": 64, "joint_batch_size": 4}
#: smoke: shapes shrunk so the pipeline is exercised in seconds; its numbers mean nothing.
SMOKE = {**FULL, "warmup": 1, "repeats": 1, "n_passages": 2, "reader_batch_size": 2, "distill_batch_size": 8,
         "distill_questions": 8, "joint_batch_size": 2}

SETTINGS = {
    # name: (TrainConfig.setting, steps field, batch field)
    "reader": ("reader", "reader_steps", "reader_batch_size"),
    "distill_cached": ("offtheshelf-distill", "distill_steps", "distill_batch_size"),
    "joint": ("joint", "joint_steps", "joint_batch_size"),
}


def _timed_trainer_class():
    from attnrag.train.trainer import Trainer

    class TimedTrainer(Trainer):
        """Records a timestamp at the start of the optimisation loop and after every step's log row."""

        step_marks: list[float]
        cache_seconds: float | None = None
        cache_questions: int | None = None

        def _load(self) -> None:
            super()._load()
            self.reader.save = lambda *a, **k: None  # saving weights is not part of a step
            self.retriever.save = lambda *a, **k: None

        def _optimise(self, *args, **kwargs):
            self.step_marks = [time.perf_counter()]
            return super()._optimise(*args, **kwargs)

        def _log(self, row: dict) -> None:
            super()._log(row)
            if "step" in row and "event" not in row:
                self.step_marks.append(time.perf_counter())
                if "skipped" in row:
                    self.skipped = getattr(self, "skipped", 0) + 1

        def _teacher_cache(self, examples):
            t0 = time.perf_counter()
            out = super()._teacher_cache(examples)
            self.cache_seconds = time.perf_counter() - t0
            self.cache_questions = len(examples)
            return out

    return TimedTrainer


def run_setting(name: str, cfg: dict, data_dir: Path, work: Path) -> dict:
    from attnrag.train.config import TrainConfig

    setting, steps_field, batch_field = SETTINGS[name]
    steps = cfg["warmup"] + cfg["repeats"]
    options = TrainConfig(
        setting=setting, data=str(data_dir), out=str(work / name), n_passages=cfg["n_passages"],
        reader_batch_size=cfg["reader_batch_size"], distill_batch_size=cfg["distill_batch_size"],
        joint_batch_size=cfg["joint_batch_size"], distill_questions=cfg["distill_questions"],
        eval_every=10**9, save_every=10**9, eval_questions=2, indicator_questions=0, device="cpu", seed=0,
        **{steps_field: steps},
    )
    trainer = _timed_trainer_class()(options, progress=False)
    log(f"train_step: {name} ({setting}), {steps} steps")
    t0 = time.perf_counter()
    trainer.run()
    wall = time.perf_counter() - t0
    marks = trainer.step_marks
    step_times = [b - a for a, b in itertools.pairwise(marks)]
    timed = step_times[cfg["warmup"]:]
    batch = getattr(options, batch_field)
    out = {
        "setting": setting, "batch_size": batch, "n_passages": cfg["n_passages"],
        "warmup_steps_s": [round(t, 6) for t in step_times[: cfg["warmup"]]],
        "step": summarize(timed),
        "examples_per_s": round(batch / statistics.median(timed), 3),
        "skipped_steps": getattr(trainer, "skipped", 0),
        "run_wall_s": round(wall, 2),
    }
    from bench_teacher_pass import reader_precision

    out["reader_precision"] = reader_precision(trainer.reader)
    if name in ("reader", "joint"):
        out["reader_trainable_layers"] = options.reader_trainable_layers
        out["max_passage_tokens"] = options.prompt.max_passage_tokens
    if trainer.cache_seconds is not None:
        out["teacher_cache"] = {
            "questions": trainer.cache_questions, "seconds": round(trainer.cache_seconds, 3),
            "questions_per_s": round(trainer.cache_questions / trainer.cache_seconds, 3)}
    return out


def demo_wall_time(path: Path | None = None) -> dict:
    """The demo's measured wall time: ``path``, else a local ``demo-out/results.json``, else the committed
    run in ``docs/results/demo/results.json`` (its machine and config are recorded with it)."""
    if path is None:
        local = REPO_ROOT / "demo-out" / "results.json"
        path = local if local.is_file() else REPO_ROOT / "docs" / "results" / "demo" / "results.json"
    out = {"path": str(path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path),
           "present": path.is_file(), "total_wall_seconds": None}
    if path.is_file():
        try:
            res = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            out["error"] = str(exc)
            return out
        out["total_wall_seconds"] = res.get("total_wall_seconds")
        out["setup_seconds"] = res.get("setup_seconds")
        out["machine"] = res.get("machine")
        out["config"] = res.get("config")
        out["modified"] = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(path.stat().st_mtime))
    return out


def run(smoke: bool = False, demo_results: Path | None = None) -> dict:
    cfg = SMOKE if smoke else FULL
    quiet_transformers()
    from attnrag.data.synth import generate_world, write_world

    settings = {}
    with tempfile.TemporaryDirectory(prefix="attnrag-bench-train-") as tmp:
        work = Path(tmp)
        data_dir = write_world(generate_world(seed=0, size=cfg["world"]), work / "world")
        for name in SETTINGS:
            settings[name] = run_setting(name, cfg, data_dir, work)
    return {
        "description": "one optimiser step per setting through attnrag's Trainer on the default models "
                       "(small synthetic world), median step time after warm-up steps",
        "config": {**cfg, "reader": "smollm2-135m-instruct", "retriever": "minilm-l6-v2", "device": "cpu"},
        "settings": settings,
        "demo": demo_wall_time(demo_results),
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--demo-results", type=Path, default=None)
    args = ap.parse_args(argv)
    apply_threads()
    print(json.dumps(run(smoke=args.smoke, demo_results=args.demo_results), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
