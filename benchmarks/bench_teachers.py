"""Group ``teachers``: what each teacher costs per distillation question, side by side.

The teachers are scored through attnrag's own code path, ``Teacher(reader, TeacherConfig(teacher=...))
.score([question], [K passages], [answer])``, exactly as the trainer's teacher cache calls it:

``attn-norm``
    one forward over the prompt with all K passages, answer rows captured (attnrag's teacher).
``pdist``
    K prompts of one passage each, batched: one forward over K short sequences (ATLAS's pdist).
``emdr``
    the same K one-passage likelihoods as pdist (its cost is pdist's; its loss differs).
``loop``
    K + 1 prompts (all passages, then each one left out), batched: leave-one-out.

The claim under test is "the attention teacher needs one forward where the others need K or K + 1":
pdist's K forwards are short (one passage each), so its compute may be close to one K-passage
forward; this group measures it instead of assuming it. Same reader (default, fp32, CPU), same
question, K passages of exactly ``tokens`` content tokens (as in the ``teacher_pass`` group).

Time: median of interleaved repeats after warm-up (all four teachers in each round, rotated), and
each teacher's time over attn-norm's with a 95% bootstrap interval over the paired rounds. Peak
memory: a fresh subprocess per (teacher, K), peak RSS of one scoring above the RSS just before it.

Standalone::

    python benchmarks/bench_teachers.py [--smoke]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _bench import (
    Method,
    PeakRSS,
    apply_threads,
    log,
    machine_info,
    paired_ratio_interval,
    run_worker,
    time_interleaved,
)

TEACHERS = ("attn-norm", "pdist", "emdr", "loop")
FULL = {"ks": [5, 10, 20], "tokens": 100, "warmup": 1, "repeats": 5, "memory": True}
SMOKE = {"ks": [2], "tokens": 24, "warmup": 1, "repeats": 2, "memory": True}
TARGETS = {"attn_norm_no_slower_than_pdist_at_every_k": True}


def _inputs(reader, k: int, tokens: int):
    from bench_teacher_pass import make_batch, make_examples

    make_batch(reader, k, tokens, 1)  # sets the prompt's passage budget and checks the spans
    questions, passages, answers = make_examples(reader, k, tokens, 1)
    return questions, passages, answers


def _scorer(reader, teacher: str, inputs) -> Method:
    from attnrag.distill.teacher import Teacher, TeacherConfig

    scorer = Teacher(reader, TeacherConfig(teacher=teacher))
    questions, passages, answers = inputs
    return Method(lambda: scorer.score(questions, passages, answers))


def memory_worker(teacher: str, k: int, tokens: int) -> dict:
    """In a fresh process: load the reader, build the inputs, warm up on a tiny input, measure one scoring."""
    from bench_teacher_pass import load_reader

    reader = load_reader("fp32")
    tiny = _scorer(reader, teacher, _inputs(reader, 1, 8)).run
    run = _scorer(reader, teacher, _inputs(reader, k, tokens)).run
    tiny()
    with PeakRSS() as peak:
        result = run()
    del result
    return {"teacher": teacher, "k": k, "tokens": tokens, "peak_above_baseline_mib": peak.above_baseline_mib,
            "measure": peak.method}


def run(smoke: bool = False, reader=None) -> dict:
    from bench_teacher_pass import load_reader

    cfg = SMOKE if smoke else FULL
    reader = reader or load_reader("fp32")
    rows = []
    for k in cfg["ks"]:
        inputs = _inputs(reader, k, cfg["tokens"])
        methods = {t: _scorer(reader, t, inputs) for t in TEACHERS}
        log(f"teachers: K={k}, {cfg['repeats']} interleaved rounds of {', '.join(TEACHERS)}")
        timing = time_interleaved(methods, cfg["warmup"], cfg["repeats"])
        row = {"k": k, "tokens_per_passage": cfg["tokens"],
               "median_s_per_question": {t: timing[t]["median_s"] for t in TEACHERS},
               "time": timing,
               "over_attn_norm": {t: paired_ratio_interval(timing[t]["repeats_s"], timing["attn-norm"]["repeats_s"])
                                  for t in TEACHERS if t != "attn-norm"}}
        if cfg["memory"]:
            row["peak_memory_mib"] = {}
            for t in TEACHERS:
                log(f"teachers: peak memory {t} K={k} (subprocess)")
                row["peak_memory_mib"][t] = run_worker(Path(__file__), [
                    "--memory-worker", t, "--k", str(k), "--tokens", str(cfg["tokens"])])["peak_above_baseline_mib"]
        rows.append(row)
    return {
        "description": "Teacher.score on one question with K passages of `tokens` content tokens each, default "
                       "reader fp32 CPU, per teacher; times interleaved per round; memory = peak RSS above the "
                       "RSS before the scoring, fresh subprocess per (teacher, K)",
        "config": {**cfg, "teachers": list(TEACHERS)},
        "targets": TARGETS,
        "rows": rows,
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--memory-worker", choices=TEACHERS, help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=100)
    args = ap.parse_args(argv)
    apply_threads()
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.k, args.tokens)))
    else:
        print(json.dumps(run(smoke=args.smoke), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
