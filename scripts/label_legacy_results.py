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
LEGACY = {  # files re-measured since (their provenance is written by code) are no longer listed
    "docs/results/real/squad-open-dev/attempt-sum-aggregation/results.json":
        "attnrag experiment paper --data ../shared/data/squad-open-dev with config.json's options but "
        "teacher_aggregation sum, rows offtheshelf,offtheshelf-distill,step1",
}
#: trainer manifests written before ``run.json`` recorded provenance, with the commit the experiment
#: queue ran them at (clean tree) and the command of docs/results/gemma3/shuffle/README.md; cosine scoring
GEMMA = ("attnrag train --setting offtheshelf-distill --data demo-gemma/world --index demo-gemma/index "
         "--reader demo-gemma/runs/step1/reader --n-passages 3 --distill-passages 5 --train-questions 800 "
         "--distill-questions 200 --distill-steps 120 --retriever-lr 5e-05 --eval-every 100 "
         "--indicator-questions 0 --prompt-max-passage-tokens 64")
KNOWN_COMMIT = {
    "docs/results/gemma3/shuffle/shuffle/run.json": (GEMMA + " --teacher-shuffle-orders 4 --out gemma-shuffle", "26a2af0"),
    "docs/results/gemma3/shuffle/noshuffle/run.json": (GEMMA + " --out gemma-noshuffle", "26a2af0"),
}


def adding_commit(path: str) -> str:
    out = subprocess.run(["git", "-C", str(ROOT), "log", "--diff-filter=A", "--format=%H", "--", path],
                         capture_output=True, text=True, check=True).stdout.split()
    return out[-1] if out else "unknown"


def recorded_by_code(data: dict) -> bool:
    """A provenance record written by attnrag itself is never replaced by a reconstructed one."""
    record = data.get("provenance")
    return isinstance(record, dict) and record.get("recorded_by_code", True) is not False


def main() -> None:
    for path, command in LEGACY.items():
        file = ROOT / path
        data = json.loads(file.read_text(encoding="utf-8"))
        if recorded_by_code(data):
            print(path, "has provenance recorded by code; left as is")
            continue
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
    for path, (command, commit) in KNOWN_COMMIT.items():
        file = ROOT / path
        data = json.loads(file.read_text(encoding="utf-8"))
        if recorded_by_code(data):
            print(path, "has provenance recorded by code; left as is")
            continue
        data["provenance"] = {
            "recorded_by_code": False, "command": command, "commit": commit, "dirty": False,
            "machine": "this project's 2-core x86_64 CPU (torch 2.13.0+cpu)",
            "note": "written before the trainer recorded provenance in run.json (it does from commit 864e736); "
                    "this record was added afterwards by scripts/label_legacy_results.py from the experiment "
                    "queue's log and docs/results/gemma3/shuffle/README.md"}
        file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(path, "commit", commit)


if __name__ == "__main__":
    main()
