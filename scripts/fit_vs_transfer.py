"""Fitting vs transfer: gold recall of the zero-shot and a distilled retriever on the run's own
distillation questions (the questions the teacher scored) and on the test split.

A retriever that gains on its distillation questions but not on test has learned those questions,
not the domain. Writes one JSON file with provenance.

    python scripts/fit_vs_transfer.py --run OUT/runs/step1 --index OUT/index --out fit.json
"""

from __future__ import annotations

import argparse
import json

from attnrag.data.formats import load_corpus_dir
from attnrag.evaluate.qa import load_system
from attnrag.evaluate.retrieval import evaluate_retrieval
from attnrag.provenance import Provenance, write_result
from attnrag.run import RunDir
from attnrag.train.trainer import select_subset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--index", required=True, help="the base retriever's index")
    parser.add_argument("--baseline", default="minilm-l6-v2")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    prov = Provenance.start()
    cfg = RunDir(args.run).config()
    _, splits = load_corpus_dir(cfg["data"], cfg.get("distractors"))
    train = select_subset(splits["train"], cfg["train_questions"], cfg["seed"])
    sets = {"distillation": select_subset(train, cfg["distill_questions"], cfg["seed"] + 1), "test": splits["test"]}
    systems = {"zero-shot": load_system(retriever=args.baseline, index=args.index, load_reader=False, device="cpu"),
               "distilled": load_system(args.run, load_reader=False, device="cpu")}
    rows = []
    for name, system in systems.items():
        for split, examples in sets.items():
            got = evaluate_retrieval(system.index, system.passages, system.retriever, examples, ks=[1, 5, 10])
            rows.append({"retriever": name, "questions": split, "n": got["n"],
                         **{k: got[k] for k in ("gold_recall@1", "gold_recall@5", "gold_recall@10")}})
            print(json.dumps(rows[-1]), flush=True)
    write_result(args.out, {"run": args.run, "rows": rows}, prov)


if __name__ == "__main__":
    main()
