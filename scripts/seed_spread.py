"""Training variance: the same experiment run with several training seeds (``--train-seed``, same data),
each row's gain over the zero-shot row per seed, and their spread.

    python scripts/seed_spread.py --experiment 0=docs/results/demo --experiment 1=OUT1 --experiment 2=OUT2 \\
        --baseline offtheshelf --out docs/results/demo/seeds.json

Each experiment directory holds a ``results.json`` (and, when present, the ``bootstrap.json`` of
``scripts/paired_bootstrap.py``, whose intervals are the evaluation uncertainty of that seed). A gain
is called robust here only when every seed's gain is positive and every seed's bootstrap interval,
where measured, excludes zero: training and evaluation variance both survived.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from attnrag.experiment.config import PaperConfig
from attnrag.provenance import Provenance, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", action="append", required=True, metavar="SEED=DIR")
    parser.add_argument("--baseline", default="offtheshelf", help="the row every gain is measured against")
    parser.add_argument("--metrics", default="gold_recall@1,gold_recall@5,em")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    prov = Provenance.start()
    metrics = args.metrics.split(",")
    seeds: dict[str, dict] = {}
    for spec in args.experiment:
        seed, _, directory = spec.partition("=")
        results_path = Path(directory) / "results.json"
        if not results_path.is_file():
            parser.error(f"--experiment {spec}: {results_path} does not exist")
        results = json.loads(results_path.read_text(encoding="utf-8"))
        if args.baseline not in results.get("rows", {}):
            parser.error(f"--experiment {spec}: {results_path} has no row {args.baseline!r} (--baseline)")
        boot_path = Path(directory) / "bootstrap.json"
        boot = json.loads(boot_path.read_text(encoding="utf-8")) if boot_path.is_file() else {"rows": {}}
        commits = sorted({c["source"]["commit"][:7] for c in results.get("calls", []) if c.get("source")})
        seeds[seed] = {"dir": directory, "commits": commits, "rows": results["rows"], "bootstrap": boot["rows"],
                       "train_seed": PaperConfig.from_dict(results["config"]).train.seed}
    rows = sorted(set.intersection(*(set(s["rows"]) for s in seeds.values())) - {args.baseline})
    out = {"baseline": args.baseline, "seeds": {k: {"dir": v["dir"], "commits": v["commits"],
                                                      "train_seed": v["train_seed"]} for k, v in seeds.items()},
           "rows": {}}
    for row in rows:
        entry = {}
        for metric in metrics:
            values = {k: s["rows"][row].get(metric) for k, s in seeds.items()}
            base = {k: s["rows"][args.baseline].get(metric) for k, s in seeds.items()}
            if any(v is None for v in values.values()):
                continue
            gains = [values[k] - base[k] for k in seeds]
            entry[metric] = {"per_seed": values, "gain_per_seed": dict(zip(seeds, gains)),
                             "mean": statistics.fmean(values.values()), "gain_mean": statistics.fmean(gains),
                             "gain_sd": statistics.stdev(gains) if len(gains) > 1 else None,
                             "gain_min": min(gains), "gain_max": max(gains)}
        intervals = {k: s["bootstrap"].get(row, {}).get("vs_baseline@1") for k, s in seeds.items()}
        entry["bootstrap_gold_recall@1"] = intervals
        gains = entry.get("gold_recall@1", {}).get("gain_per_seed", {})
        measured = [iv for iv in intervals.values() if iv]
        entry["robust"] = bool(gains) and all(g > 0 for g in gains.values()) and all(
            iv["low"] > 0 for iv in measured)
        out["rows"][row] = entry
        print(json.dumps({row: {m: {"gain_mean": round(e["gain_mean"], 3), "gain_sd": e["gain_sd"] and round(e["gain_sd"], 3)}
                                for m, e in entry.items() if isinstance(e, dict) and "gain_mean" in e},
                          "robust": entry["robust"]}), flush=True)
    write_result(args.out, out, prov)


if __name__ == "__main__":
    main()
