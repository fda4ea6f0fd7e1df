"""Evaluation uncertainty of each distilled retriever's gain over the zero-shot one: paired bootstrap
of gold recall@1 over the same test questions (see :mod:`attnrag.evaluate.bootstrap`).

    python scripts/paired_bootstrap.py --data DIR --index INDEX --run step1=OUT/runs/step1 \\
        --run step2=OUT/runs/step2 --out OUT/bootstrap.json [--split test] [--distractors FILE] \
        [--compare step1-full:step1] [--share step1:supervised]

The baseline is the base retriever (``--baseline``, default the registry's MiniLM) on ``--index``,
scored with its own similarity. Writes one JSON file with provenance.
"""

from __future__ import annotations

import argparse
import json

from attnrag.data.formats import load_corpus_dir
from attnrag.evaluate.bootstrap import gold_hits_at_k, paired_bootstrap, recovered_share
from attnrag.evaluate.qa import load_system
from attnrag.evaluate.retrieval import evaluate_retrieval
from attnrag.models import DEFAULT_RETRIEVER
from attnrag.provenance import Provenance, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--run", action="append", default=[], help="NAME=RUN_DIR, repeatable")
    parser.add_argument("--baseline", default=DEFAULT_RETRIEVER)
    parser.add_argument("--split", default="test")
    parser.add_argument("--distractors")
    parser.add_argument("--compare", action="append", default=[], metavar="A:B",
                        help="also a paired bootstrap of run A against run B (repeatable)")
    parser.add_argument("--share", action="append", default=[], metavar="DISTILLED:SUPERVISED",
                        help="share of SUPERVISED's gain that DISTILLED recovers, with its interval (repeatable)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    prov = Provenance.start()
    _, splits = load_corpus_dir(args.data, args.distractors)
    examples = [e for e in splits[args.split] if e.gold_passage_ids]

    def hits(system) -> tuple:
        got = evaluate_retrieval(system.index, system.passages, system.retriever, examples, ks=[1, 5])
        return gold_hits_at_k(got["retrieved_ids"], examples, 1), gold_hits_at_k(got["retrieved_ids"], examples, 5)

    base1, base5 = hits(load_system(retriever=args.baseline, index=args.index, load_reader=False, device="cpu"))
    result = {"split": args.split, "n": len(examples), "baseline": args.baseline,
              "baseline_gold_recall@1": float(base1.mean()), "baseline_gold_recall@5": float(base5.mean()), "rows": {}}
    per_row = {}
    for spec in args.run:
        name, _, run = spec.partition("=")
        r1, r5 = hits(load_system(run, load_reader=False, device="cpu"))
        per_row[name] = r1
        result["rows"][name] = {"run": run, "gold_recall@1": float(r1.mean()), "gold_recall@5": float(r5.mean()),
                                "vs_baseline@1": paired_bootstrap(r1, base1),
                                "vs_baseline@5": paired_bootstrap(r5, base5)}
        print(json.dumps({name: result["rows"][name]["vs_baseline@1"]}), flush=True)
    for option, specs in (("--compare", args.compare), ("--share", args.share)):
        for spec in specs:
            missing = [name for name in spec.partition(":")[::2] if name not in per_row]
            if missing:
                parser.error(f"{option} {spec}: no --run named {', '.join(missing)} (runs: {', '.join(per_row)})")
    for spec in args.compare:
        a, _, b = spec.partition(":")
        result.setdefault("compare@1", {})[spec] = paired_bootstrap(per_row[a], per_row[b])
    for spec in args.share:
        distilled, _, supervised = spec.partition(":")
        result.setdefault("share@1", {})[spec] = recovered_share(per_row[distilled], per_row[supervised], base1)
        print(json.dumps({spec: result["share@1"][spec]}), flush=True)
    write_result(args.out, result, prov)


if __name__ == "__main__":
    main()
