"""The zero-shot baseline on every real corpus: the untouched retriever scored with its own similarity,
gold recall@1/5/20 on the test split, next to the figures sentence-transformers gives
(``../shared/data/README.md``). Every distillation result is compared with this row.

    python scripts/zero_shot.py --shared ../shared/data --out docs/results/baseline/zero_shot.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from attnrag.data.formats import load_corpus_dir
from attnrag.evaluate.retrieval import evaluate_retrieval
from attnrag.models import DEFAULT_RETRIEVER
from attnrag.provenance import Provenance, write_result
from attnrag.retrieval.encoder import BiEncoder
from attnrag.retrieval.index import build_index

# (set, distractor file or None, sentence-transformers cosine figures R@1/5/20 from the data README)
SETS = [
    ("squad-open-dev", None, (0.682, 0.887, 0.965)),
    ("nq-oracle-dev", None, (0.927, 0.992, 0.997)),
    ("nq-oracle-dev", "wiki-sample/flashrag-wiki18-100w-sample.jsonl", None),
    ("covidqa-open", None, (0.240, 0.389, 0.536)),
    ("tweetqa-open", None, (0.413, 0.580, 0.698)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", default="../shared/data")
    parser.add_argument("--retriever", default=DEFAULT_RETRIEVER)
    parser.add_argument("--similarity", default=None, help="override (e.g. dot, to measure the old scoring)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    prov = Provenance.start()
    encoder = BiEncoder.from_pretrained(args.retriever, device="cpu", similarity=args.similarity)
    rows = []
    for name, distractors, reference in SETS:
        t0 = time.time()
        shared = Path(args.shared)
        passages, splits = load_corpus_dir(shared / name, shared / distractors if distractors else None)
        index = build_index(passages, encoder, progress=False)
        got = evaluate_retrieval(index, index.passages, encoder, splits["test"], ks=[1, 5, 20])
        row = {"set": name, "distractors": distractors, "passages": len(passages), "n": got["n_with_gold"],
               "similarity": encoder.similarity, "max_length": encoder.passage_max_length,
               "gold_recall@1": got["gold_recall@1"], "gold_recall@5": got["gold_recall@5"],
               "gold_recall@20": got["gold_recall@20"], "sentence_transformers_reference": reference,
               "seconds": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    write_result(args.out, {"retriever": args.retriever, "rows": rows}, prov)


if __name__ == "__main__":
    main()
