"""Each teacher's temperature, chosen without labels: the same temperature for every teacher in
units of its own score spread, attn-norm's kept.

The teachers score passages on scales orders of magnitude apart (attention x value-norm sums,
attention probabilities, pre-softmax logits, answer log-likelihoods in nats), so one temperature
for all of them compares temperatures as much as signals. This script takes every teacher's scores
of the same kind of questions and candidates, measures each teacher's spread (the median over
questions of the standard deviation of its scores across the question's candidates) and sets
``tau(teacher) = reference_tau * spread(teacher) / spread(attn-norm)``: every teacher's scores,
divided by their typical spread, meet the same temperature, and attn-norm keeps the 0.01 every
teacher shared before exactly. (Matching the targets' entropy instead is degenerate here: at 0.01
attn-norm's targets are already one-hot, median normalised entropy ~1e-11, so every teacher would be
pushed to a one-hot target.) No gold passage is used to choose; the favourite-is-gold rate (which no
temperature changes) and each target's median normalised entropy are reported beside it.

    python scripts/teacher_scales.py --reader paper-out/runs/step1/reader --data paper-out/world \
        --out docs/results/teacher-tau/scales.json

or, without a reader pass, from the teacher caches of finished runs (each run's own distillation
questions and candidates; the reader, teacher and candidates as the runs had them):

    python scripts/teacher_scales.py --runs paper-out/runs/step1 paper-out/runs/teacher-attn ... \
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


def sharpness(scores: torch.Tensor, tau: float) -> dict:
    """How close ``softmax(scores / tau)`` is to one-hot: the favourite's probability (median, mean)
    and the share of questions where it exceeds 0.99."""
    top = torch.softmax(scores.double() / tau, dim=-1).max(-1).values
    return {"median_top_probability": float(top.median()), "mean_top_probability": float(top.mean()),
            "share_top_above_0.99": float((top > 0.99).double().mean()),
            "median_normalised_entropy": median_entropy(scores, tau)}


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
    parser.add_argument("--reader", help="the reader whose teachers are compared (a model directory)")
    parser.add_argument("--data", help="corpus directory with a dev split (with --reader)")
    parser.add_argument("--runs", nargs="+", help="finished runs whose teacher caches are compared instead")
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
    if args.runs:
        scored, golds, split = from_caches(args.runs)
    else:
        scored, golds, split = from_reader(args)
    target = median_entropy(scored[args.reference][1], args.reference_tau)
    teachers = {}
    for name, (candidate_ids, scores) in scored.items():
        gold = [row[0] in g for row, g in zip(candidate_ids, golds[name], strict=True)]
        favourite = scores.argmax(-1).tolist()
        favourite_gold = [row[f] in g for row, f, g in zip(candidate_ids, favourite, golds[name], strict=True)]
        spread = scores.double().std(-1)
        reference_spread = float(scored[args.reference][1].double().std(-1).median())
        tau = args.reference_tau * float(spread.median()) / reference_spread
        teachers[name] = {
            "tau": float(f"{tau:.3g}"), "median_entropy_at_tau": median_entropy(scores, float(f"{tau:.3g}")),
            "median_entropy_at_reference_tau": median_entropy(scores, args.reference_tau),
            "tau_matching_the_reference_entropy": matching_tau(scores, target),
            "score_std_median": float(spread.median()), "score_range": [float(scores.min()), float(scores.max())],
            "favourite_is_gold": float(np.mean(favourite_gold)), "retriever_top1_is_gold": float(np.mean(gold)),
            "n": len(candidate_ids), "k": int(scores.shape[1]),
            "sharpness": {str(t): sharpness(scores, t) for t in (0.01, 0.02, 0.05, 0.1)}}
    write_json(args.out, {"reference": args.reference, "reference_tau": args.reference_tau,
                          "reference_median_entropy": target, "criterion": "tau = reference_tau x the "
                          "teacher's median per-question score std / the reference's",
                          "source": {"runs": args.runs} if args.runs else {
                              "reader": args.reader, "data": str(Path(args.data).resolve()), "k": args.k,
                              "aggregation": args.aggregation},
                          "split": split, "teachers": teachers, "provenance": prov.record()})
    print(json.dumps(teachers, indent=1))


def from_reader(args) -> tuple[dict, dict, str]:
    """Every teacher's scores of the zero-shot retriever's top K for the first ``n`` dev questions."""
    passages, splits = load_corpus_dir(args.data)
    examples = load_examples(splits["dev"], args.n)
    encoder = BiEncoder.from_pretrained(DEFAULT_RETRIEVER)
    index = build_index(passages, encoder, progress=False)
    _, candidates = retrieve(index, {p.id: p for p in passages}, encoder, [e.question for e in examples], args.k)
    prompt = PromptConfig(max_passage_tokens=args.max_passage_tokens) if args.max_passage_tokens else None
    reader = load_reader(args.reader, prompt=prompt)
    scored, golds = {}, {}
    for name in args.teachers.split(","):
        usable, scores = score_candidates(reader, examples, candidates,
                                          TeacherConfig(teacher=name, aggregation=args.aggregation))
        scored[name] = ([[p.id for p in candidates[i]] for i in usable], scores)
        golds[name] = [set(examples[i].gold_passage_ids) for i in usable]
        print(f"{name}: scored {len(usable)} questions", flush=True)
    return scored, golds, "dev"


def from_caches(runs: list[str]) -> tuple[dict, dict, str]:
    """Each run's cached teacher scores (its distillation questions and candidates), by its teacher."""
    from attnrag.run import RunDir
    from attnrag.train.checkpoint import load_teacher_cache

    scored, golds = {}, {}
    for run in runs:
        config = RunDir(run).config() or {}
        name = (config.get("teacher") or {}).get("teacher", "attn-norm")
        cache = load_teacher_cache(RunDir(run).teacher_cache_path)
        if cache is None:
            raise SystemExit(f"{run}: no teacher cache")
        n = len(cache["rows"])
        _, splits = load_corpus_dir(config["data"])
        gold_of = {e.id: set(e.gold_passage_ids) for e in splits["train"]}
        scored[name] = ([list(c) for c in cache["candidate_ids"][:n]], torch.stack(list(cache["rows"])).float())
        golds[name] = [gold_of[q] for q in cache["question_ids"][:n]]
        print(f"{name}: {n} cached questions from {run}", flush=True)
    return scored, golds, "train (the runs' distillation questions)"


if __name__ == "__main__":
    main()
