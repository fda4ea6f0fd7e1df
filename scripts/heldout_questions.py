"""Training questions a run did not train on: the held-out set of docs/analysis.md.

    python scripts/heldout_questions.py --data DEMO/world --used 800 --n 1000 --out heldout.jsonl

``--used`` and ``--seed`` are the run's ``train_questions`` and ``seed``: the questions
:func:`attnrag.train.trainer.select_subset` drew for training are left out, and the first ``--n`` of the
rest (file order) are written, in attnrag's jsonl format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from attnrag.data.formats import load_qa
from attnrag.io import write_jsonl
from attnrag.train.trainer import select_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="directory with train.jsonl")
    parser.add_argument("--used", type=int, required=True, help="the run's train_questions")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    train = load_qa(Path(args.data) / "train.jsonl")
    used = {e.id for e in select_subset(train, args.used, args.seed)}
    held = [e for e in train if e.id not in used][: args.n]
    rows = ({"id": e.id, "question": e.question, "answers": list(e.answers),
             "gold_passage_ids": list(e.gold_passage_ids)} for e in held)
    print(f"{write_jsonl(args.out, rows)} held-out questions -> {args.out}")


if __name__ == "__main__":
    main()
