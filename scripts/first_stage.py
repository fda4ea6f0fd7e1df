"""The first stages a user already has, on every real set and the embedded world: BM25, the zero-shot
dense retriever (cosine, as sentence-transformers scores it), and their hybrids (reciprocal-rank
fusion, and a convex mix of min-max scores whose lexical weight is chosen on the dev split).

Gold recall@1/5/20 on dev and test; the best first stage is picked on dev (gold recall@1) and every
other is compared with it on test by the paired bootstrap. Every distillation result is stated against
the row this script calls ``best_on_dev``.

    python scripts/first_stage.py --shared ../shared/data --out docs/results/first-stage/first_stage.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from attnrag.data.formats import load_corpus_dir
from attnrag.data.synth import generate_world, write_world
from attnrag.evaluate.bootstrap import gold_hits_at_k, paired_bootstrap
from attnrag.evaluate.retrieval import evaluate_retrieval, tune_hybrid_weight
from attnrag.models import DEFAULT_RETRIEVER
from attnrag.provenance import Provenance, write_result
from attnrag.retrieval.encoder import BiEncoder
from attnrag.retrieval.hybrid import DEFAULT_DEPTH, HybridIndex
from attnrag.retrieval.index import build_index
from attnrag.retrieval.lexical import BM25Index

SETS = ["tweetqa-open", "covidqa-open", "squad-open-dev", "nq-oracle-dev", "demo-world"]
KS = (1, 5, 20)
DEPTH = DEFAULT_DEPTH


def first_stages(data_dir: Path, encoder: BiEncoder) -> dict:
    passages, splits = load_corpus_dir(data_dir)
    dev, test = splits["dev"], splits["test"]
    dense = build_index(passages, encoder, progress=False)
    lexical = BM25Index.build(passages)
    by_id = {p.id: p for p in passages}

    tuned = tune_hybrid_weight(lexical, dense, encoder, dev, depth=DEPTH)  # the routine every caller uses
    weight, curve = tuned["weight"], {float(w): v for w, v in tuned["table"].items()}
    systems = {"bm25": lexical, "dense": dense, "hybrid_rrf": HybridIndex(lexical, dense, "rrf", 0.5, DEPTH),
               "hybrid_convex": HybridIndex(lexical, dense, "convex", weight, DEPTH)}
    rows, hits = {}, {}
    for name, index in systems.items():
        row = {}
        for split, examples in (("dev", dev), ("test", test)):
            result = evaluate_retrieval(index, by_id, encoder, examples, ks=KS)
            row[split] = {f"gold_recall@{k}": round(result[f"gold_recall@{k}"], 4) for k in KS}
            row[split]["answer_recall@1"] = round(result["answer_recall@1"], 4)
            if split == "test":
                labelled = [e for e in examples if e.gold_passage_ids]
                ids = [r for r, e in zip(result["retrieved_ids"], examples) if e.gold_passage_ids]
                hits[name] = gold_hits_at_k(ids, labelled, 1)
        rows[name] = row
    best_dev = max(rows, key=lambda n: rows[n]["dev"]["gold_recall@1"])
    best_test = max(rows, key=lambda n: rows[n]["test"]["gold_recall@1"])
    for name in rows:
        rows[name]["test_vs_best_on_dev"] = paired_bootstrap(hits[name], hits[best_dev])
    return {"passages": len(passages), "dev_questions": len(dev), "test_questions": len(test),
            "convex_weight_dev": weight, "convex_dev_curve": curve, "depth": DEPTH, "systems": rows,
            "best_on_dev": best_dev, "best_on_test": best_test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default="../shared/data")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    prov = Provenance.start()
    encoder = BiEncoder.from_pretrained(DEFAULT_RETRIEVER, device="cpu")
    out = {"retriever": DEFAULT_RETRIEVER, "similarity": encoder.similarity,
           "bm25": BM25Index.build(load_corpus_dir(Path(args.shared) / "tweetqa-open")[0][:10]).record(), "sets": {}}
    for name in args.sets.split(","):
        if name == "demo-world":  # the demo's generated world (seed 0, PaperConfig.demo()'s size)
            with tempfile.TemporaryDirectory() as tmp:
                write_world(generate_world(seed=0, size="default"), Path(tmp))
                out["sets"][name] = first_stages(Path(tmp), encoder)
        else:
            out["sets"][name] = first_stages(Path(args.shared) / name, encoder)
        row = out["sets"][name]
        print(name, "best on dev:", row["best_on_dev"], {n: r["test"]["gold_recall@1"] for n, r in row["systems"].items()},
              flush=True)
        write_result(args.out, out, prov)


if __name__ == "__main__":
    main()
