"""Another teacher signal on the same questions and candidates as a run's cached teacher pass, each
set against DPR's answer match (:func:`attnrag.analysis.targets.compare_targets`).

A run's ``teacher_cache.pt`` holds its distillation questions, their first-stage candidates and its
teacher's scores. This script scores the first ``--n`` of those questions' candidates again with
``--teacher`` (e.g. ``pdist``: the reader's log-likelihood of the gold answer given each passage
alone), with the run's own reader and prompt, and reports for the cached teacher and for the new
one how often each target's favourite is the gold passage against answer match's positive, paired
over the same questions with a 95% bootstrap interval. No training: it says whether a signal could
teach better than the string match before a row is spent on it.

    python scripts/teacher_vs_answer.py --run OUT/runs/step1-bm25-full-inbatch --teacher pdist \
        --n 150 --out docs/results/.../teacher-vs-answer.json

or, without a reader pass, from another finished run's cache of the same questions and candidates
(e.g. the paper grid's ``teacher-pdist`` row beside its ``step1``):

    python scripts/teacher_vs_answer.py --run OUT/runs/step1 --other-run OUT/runs/teacher-pdist --out F

Caveat (printed in the JSON): a run's distillation questions are training questions, which a
fine-tuned (Step-1) reader was also fine-tuned on; both teachers share that advantage here.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace

import torch

from attnrag.analysis.diagnose import score_candidates
from attnrag.analysis.targets import compare_targets
from attnrag.data.formats import load_corpus_dir
from attnrag.provenance import Provenance, write_result
from attnrag.reader.factory import load_reader
from attnrag.run import RunDir
from attnrag.train.checkpoint import load_teacher_cache
from attnrag.train.config import TrainConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="a run directory with a teacher_cache.pt and config.json")
    parser.add_argument("--teacher", help="the teacher signal to score the same candidates with")
    parser.add_argument("--other-run", help="instead of --teacher: a run whose cache scored the same questions and "
                        "candidates with another teacher")
    parser.add_argument("--n", type=int, default=150, help="the first N cached questions")
    parser.add_argument("--out", required=True, help="JSON file written with provenance")
    args = parser.parse_args()
    prov = Provenance.start()
    layout = RunDir(args.run)
    cfg = TrainConfig.load(layout.config_path)
    cache = load_teacher_cache(layout.teacher_cache_path)
    if cache is None:
        raise SystemExit(f"{args.run}: no teacher cache")
    passages, splits = load_corpus_dir(cfg.data, cfg.distractors)
    by_pid = {p.id: p for p in passages}
    by_qid = {e.id: e for split in splits.values() for e in split}
    n = min(args.n, len(cache["rows"]))
    missing_q = [q for q in cache["question_ids"][:n] if q not in by_qid]
    missing_p = [p for row in cache["candidate_ids"][:n] for p in row if p not in by_pid]
    if missing_q or missing_p:
        raise SystemExit(f"{layout.teacher_cache_path}: {len(missing_q)} question id(s) and {len(missing_p)} passage "
                         f"id(s) are not in the run's data {cfg.data} (first: {(missing_q or missing_p)[0]!r})")
    examples = [by_qid[q] for q in cache["question_ids"][:n]]
    candidates = [[by_pid[p] for p in row] for row in cache["candidate_ids"][:n]]
    cached = torch.stack(list(cache["rows"][:n])).float()

    if args.other_run:
        other_cfg = TrainConfig.load(RunDir(args.other_run).config_path)
        other = load_teacher_cache(RunDir(args.other_run).teacher_cache_path)
        if other is None or list(other["question_ids"][:n]) != list(cache["question_ids"][:n]) or [
                list(c) for c in other["candidate_ids"][:n]] != [list(c) for c in cache["candidate_ids"][:n]]:
            raise SystemExit(f"{args.other_run}: its cache does not hold the same questions and candidates")
        new_teacher, scores = other_cfg.teacher, torch.stack(list(other["rows"][:n])).float()
    elif args.teacher:
        reader = load_reader(cfg.reader, prompt=cfg.prompt, precision=cfg.precision)
        new_teacher = replace(cfg.teacher, teacher=args.teacher)
        usable, scores = score_candidates(reader, examples, candidates, new_teacher)
        if len(usable) != n:
            raise SystemExit(f"{n - len(usable)} cached questions have neither gold ids nor an answer")
    else:
        raise SystemExit("give --teacher or --other-run")

    result = {"run": args.run, "reader": cfg.reader, "questions": n, "k": int(cached.shape[1]),
              "caveat": "distillation questions are training questions; a Step-1 reader was fine-tuned on them",
              "teachers": {}}
    for name, teacher_cfg, teacher_scores in ((cfg.teacher.teacher, cfg.teacher, cached),
                                              (new_teacher.teacher, new_teacher, scores)):
        tau = cfg.tau_gold if cfg.tau_gold is not None else replace(cfg, teacher=teacher_cfg).teacher_tau
        result["teachers"][name] = {"teacher_config": asdict(teacher_cfg), "tau": tau,
                                    **compare_targets(examples, candidates, teacher_scores, tau_gold=tau,
                                                     split="cached training")}
    write_result(args.out, result, prov)
    for name, r in result["teachers"].items():
        print(name, json.dumps(r.get("versus_answer"), indent=1), r.get("message"))


if __name__ == "__main__":
    main()
