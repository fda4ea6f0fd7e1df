"""Write src/attnrag/experiment/demo_timings.json from measured demos: what ``attnrag demo`` quotes
and scales its expected wall time by (attnrag/experiment/eta.py).

    python scripts/demo_timings.py fp32=docs/results/demo-fp32/after/results.json \
        bf16=docs/results/demo/results.json

Each ``precision=path`` is a demo's results.json (written by the code, with its provenance); the
row wall seconds, the total, the machine and the commit are copied from it, nothing by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "attnrag" / "experiment" / "demo_timings.json"


def entry(path: Path) -> dict:
    results = json.loads(path.read_text(encoding="utf-8"))
    rows = {k: r["wall_seconds"] for k, r in results["rows"].items() if r.get("status") == "done"}
    prov = results.get("provenance") or {}
    return {"total_seconds": results["total_wall_seconds"], "rows": rows,
            "machine": results.get("machine", "unknown machine"),
            "commit": str(prov.get("commit") or "unknown"), "dirty": prov.get("dirty"),
            "config": results["config"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("measured", nargs="+", help="precision=path/to/results.json (precision: fp32 or bf16)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    precisions = {}
    sources = {}
    for item in args.measured:
        precision, _, path = item.partition("=")
        if precision not in ("fp32", "bf16") or not path:
            parser.error(f"expected fp32=PATH or bf16=PATH, got {item!r}")
        precisions[precision] = entry(Path(path))
        sources[precision] = path
    args.out.write_text(json.dumps({"written_by": "scripts/demo_timings.py", "sources": sources,
                                    "precisions": precisions}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
