"""Label the results files written before attnrag's provenance writer existed.

They record no command line and, for some, no commit. Rather than leave a reviewer guessing, each
gets a ``provenance`` record marked ``recorded_by_code: false``: the commit(s) taken from the file's
own ``calls`` / ``source`` fields where it has them, else the commit that added the file to the
repository (an upper bound on the code that produced it), the command as the docs give it, and the
note that these numbers use the old dot-product retriever scoring. The measurements are untouched.

    python scripts/label_legacy_results.py
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OLD_SCORING = ("measured with attnrag's former retriever scoring (unnormalised dot product, 128-token passages), "
               "not the cosine all-MiniLM-L6-v2 was trained for; see docs/results/baseline/")
LEGACY = {
    "docs/results/analysis/indicators.json": "attnrag analyze --run smollm2-135m-instruct --run DEMO/runs/offtheshelf-distill "
    "--run DEMO/runs/finetuned-distill --label ... --data heldout.jsonl --index DEMO/index --n 1000 --n-passages 3 "
    "--out docs/results/analysis (docs/analysis.md)",
    "docs/results/paper/results.json": "attnrag experiment paper --out paper-quick --budget quick",
    "docs/results/real/nq-oracle-dev/results.json": "docs/results/real/run.sh (nq-oracle-dev lines)",
    "docs/results/real/squad-open-dev/results.json": "docs/results/real/run.sh (squad-open-dev lines)",
    "docs/results/real/squad-open-dev/attempt-sum-aggregation/results.json":
        "attnrag experiment paper --data ../shared/data/squad-open-dev with config.json's options but "
        "teacher_aggregation sum, rows offtheshelf,offtheshelf-distill,step1",
}


def adding_commit(path: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--", path],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[-1] if out else "unknown"


def main() -> None:
    for path, command in LEGACY.items():
        file = ROOT / path
        data = json.loads(file.read_text(encoding="utf-8"))
        calls = [c.get("source") for c in data.get("calls", []) if c.get("source")]
        label = {"recorded_by_code": False, "command": command, "scoring": OLD_SCORING}
        if calls:
            label["commits"] = calls
        else:
            label["commit"] = None
            label["added_in_commit"] = adding_commit(path)
        label["note"] = ("written before attnrag recorded provenance; this record was added afterwards by "
                         "scripts/label_legacy_results.py from the file's own fields, git history and the docs")
        data["provenance"] = label
        file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(path, "commits" if calls else "added_in_commit", calls or label["added_in_commit"])


if __name__ == "__main__":
    main()
