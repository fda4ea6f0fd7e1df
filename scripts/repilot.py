"""Re-run only the pilot of finished distillation rows, at today's pilot settings (issue #42).

    python scripts/repilot.py --out /work/exp/repilot \\
        docs/results/real/covidqa-open/targets/seed1/results.json=/work/exp/covidqa-targets-seed1 ...

Each ``RESULTS=EXPERIMENT`` pair names a committed paper-grid ``results.json`` and the experiment
directory whose ``runs/<row>/`` produced it. Every row of the results file that logged a pilot is piloted
again from its run's ``config.json`` with ``pilot_only`` (the teacher pass, or the target, then the
pilot, then stop) and the pilot options of today's :class:`~attnrag.train.config.TrainConfig` defaults
(or ``--set OPTION=N`` for any of :data:`PILOT_OPTIONS`), its teacher scores copied from the run (the run's own pass: the
cache is checked against the reader, teacher, prompt, questions and candidates, and recomputed where
anything differs, which the line records). A fine-tuned reader's row pilots with the reader that run
saved (no second fine-tuning); a Step 2 row starts from its Step 1 run's retriever and index, as it did.

Why: a pilot's prediction is validated against the full run's test outcome, which does not depend on the
pilot (the pilot restores the retriever; tests/test_trainer_pilot.py), so a cheaper pilot can be judged
on the rows already measured without training them again.

Writes one JSON line per finished row to ``OUT/pilots.jsonl`` (resumable: a row already there is not run
again), each with the pilot event, its wall seconds, whether the teacher cache was reused, and the
provenance of the job; ``scripts/validate_predictors.py --pilots OUT/pilots.jsonl`` judges them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from pathlib import Path

from attnrag.analysis.validation import NOT_PREDICTED
from attnrag.data.formats import iter_json_objects
from attnrag.errors import InputError
from attnrag.io import read_json_object
from attnrag.provenance import Provenance
from attnrag.run import RunDir
from attnrag.train.config import TrainConfig
from attnrag.train.timing import read_metrics


#: the pilot's options, set to today's defaults (or ``--set``) in every re-run
PILOT_OPTIONS = ("pilot_steps", "pilot_questions", "pilot_batch_size", "pilot_dev_questions", "pilot_pool")


def pilot_config(run_dir: Path, out: Path, overrides: dict | None = None) -> TrainConfig:
    """The run's own configuration, reduced to its pilot at today's pilot defaults (``overrides``: other
    values for :data:`PILOT_OPTIONS`)."""
    cfg = TrainConfig.from_dict(read_json_object(run_dir / "config.json"))
    defaults = TrainConfig(data=cfg.data)
    bad = sorted(set(overrides or {}) - set(PILOT_OPTIONS))
    if bad:
        raise InputError(f"only the pilot's options can be set ({', '.join(PILOT_OPTIONS)}), got {bad}", field="--set")
    changes = {"out": str(out), "pilot_only": True, **{name: getattr(defaults, name) for name in PILOT_OPTIONS},
               **(overrides or {})}
    if cfg.setting == "finetuned-distill":  # the reader that run fine-tuned, not a second fine-tuning
        changes.update(setting="offtheshelf-distill", reader=str(run_dir / "reader"))
        if cfg.init_run:  # Step 2: from the Step 1 run's retriever and index, as the run started
            init = RunDir(cfg.init_run).manifest()
            changes.update(init_run=None, retriever=init["retriever"], index=init["index"])
    return dataclasses.replace(cfg, **changes)


def one_row(results: Path, key: str, run_dir: Path, out: Path, overrides: dict | None = None) -> dict:
    from attnrag.train.trainer import Trainer

    cfg = pilot_config(run_dir, out, overrides)
    if out.exists():  # a job stopped part-way: start its pilot again (the row is not in pilots.jsonl)
        shutil.rmtree(out)
    RunDir(out).share_teacher_cache(run_dir)
    began = time.time()
    Trainer(cfg, progress=False).run()
    seconds = time.time() - began
    rows = read_metrics(out / "metrics.jsonl")
    pilot = next(r for r in reversed(rows) if r.get("event") == "pilot")
    start = next((r for r in reversed(rows) if r.get("event") == "teacher_start"), None)
    return {"results": str(results), "row": key, "run": str(run_dir), "pilot_run": out.name, "pilot": pilot,
            "pilot_seconds": pilot["seconds"], "job_seconds": round(seconds, 1),
            "teacher_rows_reused": None if start is None else start.get("cached", 0),
            "teacher_recomputed": any(r.get("event") == "teacher_cache_discarded" for r in rows),
            **{name: getattr(cfg, name) for name in PILOT_OPTIONS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", help="RESULTS=EXPERIMENT: a results.json and the directory with its runs/")
    parser.add_argument("--out", required=True, help="directory of the pilot runs and pilots.jsonl")
    parser.add_argument("--only", default=None, help="comma-separated row names to run (default: every piloted row)")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=INTEGER",
                        help=f"a pilot option other than today's default ({', '.join(PILOT_OPTIONS)}); repeatable")
    args = parser.parse_args()
    overrides = {}
    for item in args.set:
        name, _, value = item.partition("=")
        if not value.isdigit():
            raise SystemExit(f"error: --set expects OPTION=INTEGER, got {item!r}")
        overrides[name] = int(value)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "pilots.jsonl"
    try:
        done = _done(log)
        _run_rows(args, out, log, done, overrides)
    except InputError as err:  # a bad results, config or pilots file: say which, and where
        raise SystemExit(f"error: {err}") from None


def _done(log: Path) -> set[tuple[str, str]]:
    """The (results file, row) pairs ``pilots.jsonl`` already holds: those rows are not run again."""
    done = set()
    if log.is_file():
        for number, line in iter_json_objects(log):
            for name in ("results", "row"):
                if not isinstance(line.get(name), str):
                    raise InputError(f"expected a string, got {line.get(name)!r}", path=log, line=number, field=name)
            done.add((line["results"], line["row"]))
    return done


def _run_rows(args, out: Path, log: Path, done: set[tuple[str, str]], overrides: dict) -> None:
    only = None if args.only is None else set(args.only.split(","))
    for pair in args.pairs:
        if "=" not in pair:
            raise SystemExit(f"error: expected RESULTS=EXPERIMENT, got {pair!r}")
        results, experiment = (Path(p) for p in pair.split("=", 1))
        rows = read_json_object(results).get("rows")
        if not isinstance(rows, dict):
            raise InputError("expected an experiment's results.json: an object whose 'rows' is an object",
                             path=results, field="rows")
        for key, row in rows.items():
            if not isinstance(row, dict) or not row.get("pilot") or (only is not None and key not in only):
                continue
            if key.startswith(NOT_PREDICTED):  # gold labels: a ceiling, not a distillation the pilot predicts
                continue
            if (str(results), key) in done:
                continue
            run_dir = experiment / "runs" / key
            if not (run_dir / "config.json").is_file():
                print(f"skip {results}:{key}: no {run_dir}/config.json", flush=True)
                continue
            prov = Provenance.start()
            name = f"{experiment.name}-{key}"
            try:
                line = one_row(results, key, run_dir, out / name, overrides)
            except InputError as err:
                print(f"error {results}:{key}: {err}", flush=True)
                continue
            line["provenance"] = prov.record()
            with log.open("a") as fh:
                fh.write(json.dumps(line) + "\n")
            r1 = line["pilot"]["answer_recall@1"]
            print(f"{name}: {r1['delta']:+.3f} [{r1['low']:+.3f}, {r1['high']:+.3f}] in {line['pilot_seconds']:.0f} s "
                  f"(job {line['job_seconds']:.0f} s, teacher recomputed: {line['teacher_recomputed']})", flush=True)


if __name__ == "__main__":
    main()
