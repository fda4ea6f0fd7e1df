"""Each teacher's temperature, chosen on dev without labels: the one whose targets are as sharp as
attn-norm's at its temperature.

The teachers score passages on scales orders of magnitude apart (attention x value-norm sums,
attention probabilities, pre-softmax logits, answer log-likelihoods in nats), so one temperature
for all of them compares temperatures as much as signals. This script scores the same dev
questions' candidates with every teacher, and for each finds the temperature at which the median
normalised entropy of ``softmax(scores / tau)`` over a question's candidates equals attn-norm's at
``--reference-tau`` (0.01, the temperature every teacher shared before). attn-norm keeps its
temperature exactly. No gold passage is used to choose; the favourite-is-gold rate (which no
temperature changes) is reported beside it.

    python scripts/teacher_scales.py --reader paper-out/runs/step1/reader --data paper-out/world \
        --out docs/results/teacher-tau/scales.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from attnrag.analysis.analyze import load_examples
from attnrag.analysis.diagnose import score_candidates
from attnrag.data.formats import load_corpus_dir
from attnrag.distill.config import TEACHERS, TeacherConfig
from attnrag.io import write_json
from attnrag.models import DEFAULT_RETRIEVER
from attnrag.provenance import Provenance
from attnrag.reader.factory import load_reader
from attnrag.reader.prompt import PromptConfig
from attnrag.retrieval.encoder import BiEncoder
from attnrag.retrieval.index import build_index, retrieve


def median_entropy(scores: torch.Tensor, tau: float) -> float:
    """Median over questions of the entropy of ``softmax(scores / tau)``, divided by log K (0: one
    passage takes all, 1: uniform)."""
    p = torch.softmax(scores.double() / tau, dim=-1)
    h = -(p * torch.log(p.clamp_min(1e-300))).sum(-1) / math.log(scores.shape[1])
    return float(h.median())


def matching_tau(scores: torch.Tensor, target: float, low: float = 1e-6, high: float = 1e6) -> float:
    """The temperature whose median normalised entropy is ``target`` (it grows with tau: bisection
    on log tau)."""
    for _ in range(200):
        mid = math.sqrt(low * high)
        if median_entropy(scores, mid) < target:
            low = mid
        else:
            high = mid
    return math.sqrt(low * high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reader", required=True, help="the reader whose teachers are compared (a model directory)")
    parser.add_argument("--data", required=True, help="corpus directory with a dev split")
    parser.add_argument("--out", required=True, help="JSON file written with provenance")
    parser.add_argument("--n", type=int, default=100, help="dev questions")
    parser.add_argument("--k", type=int, default=5, help="candidates per question (the zero-shot retriever's top K)")
    parser.add_argument("--aggregation", default="sum", help="attention teachers' aggregation (the grid's)")
    parser.add_argument("--max-passage-tokens", type=int, default=None,
                        help="the prompt's per-passage budget (default: the reader directory's own prompt)")
    parser.add_argument("--reference", default="attn-norm")
    parser.add_argument("--reference-tau", type=float, default=0.01)
    parser.add_argument("--teachers", default=",".join(TEACHERS))
    args = parser.parse_args()
    prov = Provenance.start()
    torch.manual_seed(0)
    passages, splits = load_corpus_dir(args.data)
    examples = load_examples(splits["dev"], args.n)
    encoder = BiEncoder.from_pretrained(DEFAULT_RETRIEVER)
    index = build_index(passages, encoder, progress=False)
    _, candidates = retrieve(index, {p.id: p for p in passages}, encoder, [e.question for e in examples], args.k)
    prompt = PromptConfig(max_passage_tokens=args.max_passage_tokens) if args.max_passage_tokens else None
    reader = load_reader(args.reader, prompt=prompt)
    scored = {}
    for name in args.teachers.split(","):
        usable, scores = score_candidates(reader, examples, candidates,
                                          TeacherConfig(teacher=name, aggregation=args.aggregation))
        scored[name] = (usable, scores)
        print(f"{name}: scored {len(usable)} questions", flush=True)
    target = median_entropy(scored[args.reference][1], args.reference_tau)
    teachers = {}
    for name, (usable, scores) in scored.items():
        gold = [any(p.id in examples[i].gold_passage_ids for p in candidates[i][:1]) for i in usable]
        favourite = scores.argmax(-1).tolist()
        favourite_gold = [candidates[i][f].id in examples[i].gold_passage_ids for i, f in zip(usable, favourite)]
        spread = scores.double().std(-1)
        tau = args.reference_tau if name == args.reference else matching_tau(scores, target)
        teachers[name] = {
            "tau": float(f"{tau:.3g}"), "median_entropy_at_tau": median_entropy(scores, float(f"{tau:.3g}")),
            "median_entropy_at_reference_tau": median_entropy(scores, args.reference_tau),
            "score_std_median": float(spread.median()), "score_range": [float(scores.min()), float(scores.max())],
            "favourite_is_gold": float(np.mean(favourite_gold)), "retriever_top1_is_gold": float(np.mean(gold)),
            "n": len(usable)}
    write_json(args.out, {"reference": args.reference, "reference_tau": args.reference_tau,
                          "target_median_entropy": target, "k": args.k, "aggregation": args.aggregation,
                          "reader": args.reader, "data": str(Path(args.data).resolve()), "split": "dev",
                          "teachers": teachers, "provenance": prov.record()})
    print(json.dumps(teachers, indent=1))


if __name__ == "__main__":
    main()
