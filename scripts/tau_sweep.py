"""The student's temperature for a cosine retriever, measured: re-distil a finished run's retriever
from its cached teacher scores at several ``tau_score`` values and report dev and test gold recall@1.

The teacher cache (``teacher_cache.pt``) holds the reader's scores for every distillation question's
candidates, so each temperature costs only the retriever's training (no reader forward). The choice
is made on the dev split; test is reported alongside, not used to choose.

    python scripts/tau_sweep.py --run demo-out/runs/step1 --out tau-sweep --tau 0.02,0.05,0.1
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from attnrag.data.formats import load_corpus_dir
from attnrag.evaluate.qa import load_system
from attnrag.evaluate.retrieval import evaluate_retrieval
from attnrag.io import append_jsonl, read_json_object
from attnrag.provenance import Provenance
from attnrag.train.config import TrainConfig
from attnrag.train.trainer import TEACHER_CACHE, Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a finished distillation run (its config and teacher cache)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--tau", default="0.02,0.05,0.1", help="comma-separated tau_score values")
    parser.add_argument("--scale-by-dim", action="store_true", help="also divide scores by sqrt(dim)")
    args = parser.parse_args()
    prov = Provenance.start()
    run = Path(args.run)
    base = read_json_object(run / "config.json")
    manifest = read_json_object(run / "run.json")
    _, splits = load_corpus_dir(base["data"], base.get("distractors"))
    out = Path(args.out)
    for tau in [float(t) for t in args.tau.split(",")]:
        target = out / f"tau-{tau:g}{'-scaled' if args.scale_by_dim else ''}"
        if not (target / "run.json").is_file():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(run / TEACHER_CACHE, target / TEACHER_CACHE)
            cfg = TrainConfig.from_dict({**base, "setting": "offtheshelf-distill", "out": str(target),
                                         "reader": manifest["reader"], "init_run": None, "tau_score": tau,
                                         "scale_by_dim": True if args.scale_by_dim else None,
                                         "eval_every": 10_000, "indicator_questions": 0})
            Trainer(cfg, progress=False).run()
        system = load_system(target, load_reader=False)
        row = {"tau_score": tau, "scale_by_dim": args.scale_by_dim, "run": str(target), "source_run": str(run)}
        for split in ("dev", "test"):
            if split in splits:
                got = evaluate_retrieval(system.index, system.passages, system.retriever, splits[split], ks=[1, 5])
                row.update({f"{split}_gold_recall@1": got.get("gold_recall@1"),
                            f"{split}_gold_recall@5": got.get("gold_recall@5"), f"{split}_n": got["n"]})
        row["provenance"] = prov.record()
        append_jsonl(out / "sweep.jsonl", row)
        print(json.dumps({k: v for k, v in row.items() if k != "provenance"}), flush=True)


if __name__ == "__main__":
    main()
