"""Two runs of the same demo (or paper grid) side by side: wall times, and whether the answers changed.

    python scripts/compare_demo_runs.py --before /work/exp/demo-fp32-base --after /work/exp/demo-fp32-after \
        --time-before time-base.txt --time-after time-after.txt --out docs/results/demo-fp32/comparison
    python scripts/compare_demo_runs.py --before /work/exp/t43c/base-1 --after /work/exp/t43c/head-1 \
        --data ../shared/data/tweetqa-open --out docs/results/real/tweetqa-open/first-stage/timing/comparison

For every row (and its ``+bm25`` hybrid), question by question from ``predictions/<row>.jsonl``:
the share of identical answers and of identical passages read, and the paired (after - before)
difference in EM and in gold hit@1 with a 95% bootstrap interval. Gold passage ids come from the demo's
generated world (``<after>/world/test.jsonl``) or, for a paper grid, from ``--data``'s ``test.jsonl``. Wall times come from each run's
``results.json`` (rows and total, written by the code) and, when given, from ``/usr/bin/time -v``
(the whole process). Writes ``<out>.json`` (with provenance) and ``<out>.md``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from attnrag.data.formats import load_qa
from attnrag.evaluate.bootstrap import paired_bootstrap
from attnrag.evaluate.metrics import exact_match
from attnrag.provenance import Provenance, write_result


def predictions(run: Path) -> dict[str, dict[str, dict]]:
    out = {}
    for path in sorted((run / "predictions").glob("*.jsonl")):
        if path.name.endswith(".retrieval.jsonl"):
            continue
        out[path.name.removesuffix(".jsonl")] = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
    return out


def process_seconds(path: Path | None) -> float | None:
    """The elapsed wall clock of ``/usr/bin/time -v``'s report."""
    if path is None or not path.is_file():
        return None
    found = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", path.read_text())
    if not found:
        return None
    seconds = 0.0
    for part in found.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def gold_hit(row: dict, gold: dict[str, list[str]]) -> float:
    return float(bool(row["retrieved"][:1] and row["retrieved"][0] in set(gold.get(row["id"], []))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, required=True)
    parser.add_argument("--time-before", type=Path)
    parser.add_argument("--time-after", type=Path)
    parser.add_argument("--data", type=Path, help="the grid's data directory (its test.jsonl holds the gold "
                        "passage ids); default: the demo world inside --after")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    args = parser.parse_args()
    prov = Provenance.start()
    results = {k: json.loads((getattr(args, k) / "results.json").read_text()) for k in ("before", "after")}
    test_file = (args.data or args.after / "world") / "test.jsonl"
    gold = {e.id: list(e.gold_passage_ids) for e in load_qa(test_file)}  # a bad line is named by file, line, field
    preds = {k: predictions(getattr(args, k)) for k in ("before", "after")}
    rows = {}
    for key in preds["before"]:
        if key not in preds["after"]:
            continue
        b, a = preds["before"][key], preds["after"][key]
        ids = [i for i in b if i in a]
        em_b = np.array([exact_match(b[i]["prediction"], b[i]["answers"]) for i in ids], dtype=float)
        em_a = np.array([exact_match(a[i]["prediction"], a[i]["answers"]) for i in ids], dtype=float)
        hit_b = np.array([gold_hit(b[i], gold) for i in ids])
        hit_a = np.array([gold_hit(a[i], gold) for i in ids])
        rows[key] = {
            "n": len(ids),
            "same_passages": round(float(np.mean([a[i]["retrieved"] == b[i]["retrieved"] for i in ids])), 4),
            "same_answers": round(float(np.mean([a[i]["prediction"] == b[i]["prediction"] for i in ids])), 4),
            "em_before": float(em_b.mean()), "em_after": float(em_a.mean()),
            "em_after_minus_before": paired_bootstrap(em_a, em_b),
            "gold_recall@1_before": float(hit_b.mean()), "gold_recall@1_after": float(hit_a.mean()),
            "gold_recall@1_after_minus_before": paired_bootstrap(hit_a, hit_b),
        }
    walls = {}
    for k in ("before", "after"):
        r = results[k]
        walls[k] = {"total_inside_seconds": r.get("total_wall_seconds"),
                    "process_seconds": process_seconds(getattr(args, f"time_{k}")),
                    "rows": {key: row.get("wall_seconds") for key, row in r["rows"].items()},
                    "commit": (r.get("provenance") or {}).get("commit"),
                    "dirty": (r.get("provenance") or {}).get("dirty"),
                    "precision": r["config"].get("precision"), "machine": r.get("machine")}
    ratio = {name: (walls["after"][name] / walls["before"][name]
                    if walls["after"][name] and walls["before"][name] else None)
             for name in ("total_inside_seconds", "process_seconds")}
    record = {"before": str(args.before), "after": str(args.after), "walls": walls,
              "after_over_before": ratio, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out.with_suffix(".json"), record, prov)

    lines = ["| row | n | same passages | same answers | EM before / after | EM after - before [95%] | "
             "gold R@1 before / after | gold R@1 after - before [95%] |", "|---|" + "---:|" * 7]
    for key, r in rows.items():
        em, g = r["em_after_minus_before"], r["gold_recall@1_after_minus_before"]
        lines.append(f"| {key} | {r['n']} | {r['same_passages']:.3f} | {r['same_answers']:.3f} | "
                     f"{r['em_before']:.3f} / {r['em_after']:.3f} | {em['delta']:+.3f} [{em['low']:+.3f}, "
                     f"{em['high']:+.3f}] | {r['gold_recall@1_before']:.3f} / {r['gold_recall@1_after']:.3f} | "
                     f"{g['delta']:+.3f} [{g['low']:+.3f}, {g['high']:+.3f}] |")
    lines += ["", "| wall | before (s) | after (s) | after / before |", "|---|---:|---:|---:|"]
    for name in ("process_seconds", "total_inside_seconds"):
        b, a = walls["before"][name], walls["after"][name]
        lines.append(f"| {name.replace('_', ' ')} | {b} | {a} | {ratio[name]:.3f} |" if ratio[name] else
                     f"| {name.replace('_', ' ')} | {b} | {a} | – |")
    for key in walls["before"]["rows"]:
        b, a = walls["before"]["rows"][key], walls["after"]["rows"].get(key)
        lines.append(f"| row {key} | {b} | {a} | {a / b:.3f} |" if a and b else f"| row {key} | {b} | {a} | – |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
