"""Where a demo's (or paper grid's) time went, by stage, from the times its own logs record.

    python scripts/stage_times.py before=/work/exp/t43/base-1 after=/work/exp/t43/head-1 \
        --out docs/results/demo-fp32/stages.json

For each row of each experiment directory: the row's wall, test-evaluation, indicator, fused-twin
(``+bm25``) and training seconds (``results.json``, written by the code), and inside its training run (``runs/<row>/metrics.jsonl``,
every line timed): reader fine-tuning (first to last reader step), the teacher pass (``teacher_start``
to ``teacher``; logs older than that event give instead the span from the line before ``teacher``, which
also holds the loading between them, as ``teacher_pass_upper_seconds``), the span from the teacher pass to the first
distillation step (the held-out teacher check and the pilot, where the code has them), and the
distillation steps (first to last), and the pilot's own seconds (its ``pilot`` event, where the code has
one; it lies inside the span before the first distillation step). The rest of a row's wall time is
loading and the first-stage evaluations. No profiler: nothing is added to the measured runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attnrag.provenance import Provenance, write_result


def span(times: list[float]) -> float | None:
    return round(times[-1] - times[0], 1) if len(times) > 1 else None


def run_stages(metrics: Path) -> dict:
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    reader = [r["time"] for r in rows if r.get("stage") == "reader" and "loss" in r]
    distill = [r["time"] for r in rows if r.get("stage") == "distill" and "loss" in r]
    pilot = next((r.get("seconds") for r in rows if r.get("event") == "pilot"), None)
    start = next((r["time"] for r in rows if r.get("event") == "teacher_start"), None)
    end = next((r["time"] for r in rows if r.get("event") == "teacher"), None)
    position = next((i for i, r in enumerate(rows) if r.get("event") == "teacher"), None)
    upper = (round(end - rows[position - 1]["time"], 1) if start is None and position else None)
    return {"reader_steps_seconds": span(reader),
            "teacher_pass_seconds": None if start is None or end is None else round(end - start, 1),
            "teacher_pass_upper_seconds": upper,
            "teacher_to_first_distill_step_seconds": None if end is None or not distill
            else round(distill[0] - end, 1),
            "distill_steps_seconds": span(distill), "pilot_seconds": pilot}


def experiment_stages(directory: Path) -> dict:
    results = json.loads((directory / "results.json").read_text(encoding="utf-8"))
    rows = {}
    for key, row in results["rows"].items():
        entry = {name: row.get(name) for name in ("wall_seconds", "eval_seconds", "indicator_seconds", "train_seconds")}
        entry["fused_twin_seconds"] = (row.get("with_bm25") or {}).get("seconds")
        metrics = directory / "runs" / key / "metrics.jsonl"
        if metrics.is_file():
            entry.update(run_stages(metrics))
        rows[key] = entry
    prov = results.get("provenance") or {}
    return {"directory": str(directory), "total_wall_seconds": results.get("total_wall_seconds"),
            "commit": prov.get("commit"), "dirty": prov.get("dirty"), "machine": results.get("machine"),
            "precision": (results.get("config") or {}).get("train", {}).get("precision"), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+", help="name=experiment directory (results.json and runs/)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    prov = Provenance.start()
    record = {}
    for item in args.experiments:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"expected name=DIRECTORY, got {item!r}")
        record[name] = experiment_stages(Path(path))
    write_result(args.out, {"experiments": record}, prov)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
