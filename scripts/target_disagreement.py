"""Where the reader's attention and DPR's answer match disagree on a run's cached teacher pass, and
which one is right (:mod:`attnrag.analysis.targets`).

    python scripts/target_disagreement.py --run OUT/runs/step1-bm25-full-kl --out disagreement.json
"""

from __future__ import annotations

import argparse
import json

from attnrag.analysis.targets import target_disagreement
from attnrag.provenance import Provenance, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run directory with a teacher_cache.pt")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args()
    prov = Provenance.start()
    result = target_disagreement(args.run)
    write_result(args.out, result, prov)
    print(json.dumps({k: v for k, v in result.items() if k != "run"}, indent=1))


if __name__ == "__main__":
    main()
