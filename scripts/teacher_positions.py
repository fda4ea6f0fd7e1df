"""Where does a teacher's favourite candidate sit? Rank and length of its top-1 in a run's teacher cache.

    python scripts/teacher_positions.py --run demo-out/runs/step1 --passages demo-out/world/passages.jsonl \\
        [--run ...] --out positions.json

A teacher that looks *within* passages well (the indicators) can still prefer a position or a length
*between* them; this counts, per run, how often the teacher's top-1 candidate is at each retrieval rank
and how often it is the longest candidate (in words), next to the chance rates. Writes JSON with provenance.
"""

from __future__ import annotations

import argparse
import collections

import torch

from attnrag.data.formats import load_passages
from attnrag.provenance import Provenance, write_result
from attnrag.run import RunDir


def positions(run: str, words: dict[str, int]) -> dict:
    cache = torch.load(RunDir(run).teacher_cache_path, weights_only=True)
    ranks: collections.Counter = collections.Counter()
    longest = 0
    k = 0
    for scores, ids in zip(cache["rows"], cache["candidate_ids"], strict=True):
        top = int(torch.as_tensor(scores)[: len(ids)].argmax())
        ranks[top] += 1
        k = max(k, len(ids))
        longest += top == max(range(len(ids)), key=lambda i: words[ids[i]])
    n = len(cache["rows"])
    return {"questions": n, "candidates": k, "top1_rank_counts": {str(r): ranks[r] for r in range(k)},
            "top1_is_longest": longest, "chance_per_rank": round(n / k, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", required=True, help="run directory with a teacher cache")
    parser.add_argument("--passages", required=True, help="the corpus the candidates come from")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    prov = Provenance.start()
    words = {p.id: len(p.text.split()) for p in load_passages(args.passages)}
    result = {"runs": {run: positions(run, words) for run in args.run}}
    write_result(args.out, result, prov)
    for run, r in result["runs"].items():
        print(run, r)


if __name__ == "__main__":
    main()
