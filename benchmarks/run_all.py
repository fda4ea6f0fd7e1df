"""Run attnrag's benchmarks and write one results file (``make bench``).

Groups (one module each, ``benchmarks/bench_<group>.py``; see their docstrings for the method):

    teacher_pass  plain SDPA forward vs attnrag's teacher pass vs eager output_attentions: time,
                  peak memory (fresh subprocess per method and K), and numerical agreement
    teacher_ratio teacher / plain time with a 95% bootstrap interval over paired rounds, fp32 and bf16
    teachers      time and peak memory per distillation question of attn-norm, pdist, emdr, loop at
                  K = 5, 10, 20 (bench_teachers.py)
    encoding      BiEncoder.encode_passages vs sentence-transformers encode: texts/s
    index         flat vs IVF vs HNSW at 10k and 100k vectors and on the real corpora: build, search
                  latency, recall@10
    train_step    one optimiser step per training setting: examples/s; the demo's wall time
    scaling       plain vs teacher time over K x passage length, with a plot (scaling.png)
    bm25          attnrag's BM25 search against bm25s's own retrieve, and its top-k before / after the
                  partial selection, on TweetQA and a generated corpus of 1,000,000 passages
    generation    the demo's answer generation: batches in arrival order vs by prompt length vs
                  dynamic int8 kernels, time with a paired interval, answers compared
    kernels       torch.compile and one thread against eager on the demo's generation, teacher chunk
                  and reader step (fp32): time with a paired interval, compile time, outputs compared
    tied_step     one tied-retriever training step on the TweetQA grid's shape (8 questions x 10 BM25
                  candidates), fp32 against bf16 autocast: time with a paired interval, loss and gradient

Every comparison is measured side by side in one process on the same inputs, median of repeats
after warm-up, with every repeat and the machine (CPU, cores, torch threads, versions, git commit,
date, load average) recorded. The results file is rewritten atomically after every group, so an
interrupted run keeps the groups it finished; ``--only`` replaces just the named groups in an
existing file. ``benchmarks/report.py`` turns the file into the numbers section of
docs/performance.md.

Usage::

    python benchmarks/run_all.py --out benchmarks/results.json            # the full run (tens of minutes)
    python benchmarks/run_all.py --smoke        # pipeline check, tiny sizes -> benchmarks/results-smoke.json
    python benchmarks/run_all.py --only teacher_pass --out benchmarks/results.json
    python benchmarks/run_all.py --threads 2 --precision fp32   # torch/faiss threads; reader precision
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from pathlib import Path

from _bench import BENCH_DIR, SCHEMA_VERSION, apply_threads, load_average, log, machine_info

GROUPS = ("teacher_pass", "teacher_ratio", "teachers", "encoding", "index", "train_step", "scaling", "generation",
          "bm25", "kernels", "tied_step")


def _run_group(name: str, args: argparse.Namespace, shared: dict) -> dict:
    smoke, out = args.smoke, args.out
    if name in ("teacher_pass", "scaling") and "reader" not in shared:
        from bench_teacher_pass import load_reader

        shared["reader"] = load_reader(args.precision)
    if name == "teacher_pass":
        import bench_teacher_pass

        return bench_teacher_pass.run(smoke=smoke, reader=shared["reader"])
    if name == "scaling":
        import bench_scaling

        plot = out.parent / ("scaling-smoke.png" if smoke else "scaling.png")
        return bench_scaling.run(smoke=smoke, reader=shared["reader"], plot_path=plot)
    if name == "teacher_ratio":
        import bench_teacher_pass

        return bench_teacher_pass.run_ratio(smoke=smoke)
    if name == "teachers":
        import bench_teachers

        return bench_teachers.run(smoke=smoke)
    if name == "encoding":
        import bench_encoding

        return bench_encoding.run(smoke=smoke)
    if name == "index":
        import bench_index

        return bench_index.run(smoke=smoke)
    if name == "bm25":
        import bench_bm25

        return bench_bm25.run(smoke=smoke)
    if name == "generation":
        import bench_generation

        return bench_generation.run(smoke=smoke, precision=args.precision)
    if name == "kernels":
        import bench_kernels

        return bench_kernels.run(smoke=smoke, precision=args.precision)
    if name == "tied_step":
        import bench_tied_step

        return bench_tied_step.run(smoke=smoke)
    if name == "train_step":
        import bench_train_step

        return bench_train_step.run(smoke=smoke, demo_results=args.demo_results)
    raise ValueError(name)


def _load_existing(out: Path) -> dict:
    if not out.is_file():
        return {}
    try:
        data = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        log(f"{out} is not readable JSON; starting a new results file")
        return {}
    return data if data.get("schema") == SCHEMA_VERSION else {}


def headline(results: dict) -> list[str]:
    """A few lines with the numbers that have targets, for the terminal."""
    lines = []
    groups = results.get("groups", {})
    tp = groups.get("teacher_pass", {})
    for row in tp.get("rows", []):
        mem = row.get("peak_memory_teacher_over_eager")
        chk = row.get("check_teacher_vs_eager", {})
        targets = tp["targets"]
        lines.append(
            f"teacher_pass K={row['k']:>2} L={row['seq_len']:>5}: teacher/plain time "
            f"{row['time_teacher_over_plain']} (target <= {targets['time_teacher_over_plain_max']}; CPU time "
            f"{row.get('cpu_time_teacher_over_plain')}), teacher/eager peak memory {mem} (target <= "
            f"{targets['peak_memory_teacher_over_eager_max']} at K={targets['at_k']}), max rel err tokens "
            f"{chk.get('max_rel_error_tokens', float('nan')):.2e} passages "
            f"{chk.get('max_rel_error_passages', float('nan')):.2e}")
    enc = groups.get("encoding", {})
    if "time" in enc:
        lines.append(f"encoding: attnrag {enc['time']['attnrag']['texts_per_s']} texts/s, "
                     f"sentence-transformers {enc['time']['sentence_transformers']['texts_per_s']} texts/s, "
                     f"ratio {enc['throughput_attnrag_over_st']}")
    for size in groups.get("index", {}).get("sizes", []):
        parts = [f"{r['index']} {r['ms_per_query']:.3f} ms/q R@10 {r['recall@10_vs_flat']:.3f}"
                 for r in size["rows"]]
        lines.append(f"index n={size['n']}: " + "; ".join(parts))
    for name, s in groups.get("train_step", {}).get("settings", {}).items():
        lines.append(f"train_step {name}: {s['examples_per_s']} examples/s (batch {s['batch_size']}, "
                     f"median step {s['step']['median_s']:.3f} s)")
    demo = groups.get("train_step", {}).get("demo")
    if demo is not None:
        lines.append(f"demo wall time: {demo.get('total_wall_seconds')} s ({demo['path']}"
                     f"{'' if demo.get('present') else ', not present'})")
    for row in groups.get("scaling", {}).get("rows", []):
        lines.append(f"scaling K={row['k']:>2} tokens={row['tokens_per_passage']:>3} L={row['seq_len']:>5}: "
                     f"plain {row['plain']['median_s']:.3f} s, teacher {row['teacher']['median_s']:.3f} s, "
                     f"ratio {row['time_teacher_over_plain']} (CPU {row.get('cpu_time_teacher_over_plain')})")
    for name, g in groups.items():
        if "error" in g:
            lines.append(f"{name}: FAILED: {g['error'].strip().splitlines()[-1]}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON, written atomically after every group (default: "
                         "benchmarks/results.json; with --smoke benchmarks/results-smoke.json, so a smoke "
                         "run never replaces real results)")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, a pipeline check; its numbers mean nothing")
    ap.add_argument("--only", action="append", default=None, metavar="NAME",
                    help=f"run only this group (repeatable or comma-separated): {', '.join(GROUPS)}")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch and faiss threads (default: the libraries' defaults, i.e. all usable cores)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                    help="reader precision for teacher_pass and scaling (default fp32; train_step always "
                         "uses the Trainer's default)")
    ap.add_argument("--demo-results", type=Path, default=None,
                    help="demo results.json to read total_wall_seconds from "
                         "(default demo-out/results.json, else docs/results/demo/results.json)")
    args = ap.parse_args(argv)

    only = [n.strip() for item in (args.only or []) for n in item.split(",") if n.strip()]
    unknown = sorted(set(only) - set(GROUPS))
    if unknown:
        ap.error(f"unknown group(s) {unknown}; choose from {', '.join(GROUPS)}")
    selected = [g for g in GROUPS if not only or g in only]

    apply_threads(args.threads)
    from attnrag.io import write_json
    from attnrag.provenance import Provenance

    prov = Provenance.start()  # command line, commit, dirty flag, machine, versions, times (by code)

    if args.out is None:
        args.out = BENCH_DIR / ("results-smoke.json" if args.smoke else "results.json")
    out = args.out
    existing = _load_existing(out) if only else {}
    if existing and bool(existing.get("smoke")) != args.smoke:
        kind = "smoke" if existing.get("smoke") else "full"
        log(f"{out} holds {kind} results; not mixing them with this run's: starting a new file")
        existing = {}
    results = {
        "schema": SCHEMA_VERSION,
        "generated_by": "benchmarks/run_all.py",
        "smoke": args.smoke,
        "machine": machine_info(),
        "groups": dict(existing.get("groups", {})),
    }
    failed = []
    shared: dict = {}
    for name in selected:
        log(f"== {name}{' (smoke)' if args.smoke else ''}")
        started = time.time()
        load_before = load_average()
        try:
            group = _run_group(name, args, shared)
        except Exception:  # noqa: BLE001 - record the failure, keep running the other groups
            failed.append(name)
            group = {"error": traceback.format_exc()}
            log(f"{name} failed:\n{group['error']}")
        group.setdefault("machine", machine_info())  # per group: --only rewrites the file's own machine
        group.update({"smoke": args.smoke, "wall_s": round(time.time() - started, 2),
                      "load_average_before": load_before, "load_average_after": load_average(),
                      "provenance": prov.record()})
        results["groups"][name] = group
        results["provenance"] = prov.record()
        write_json(out, results)
        log(f"== {name} done in {group['wall_s']:.1f} s -> {out}")
    print("\n".join(headline(results)))
    if args.smoke:
        print("(smoke run: tiny sizes on a possibly busy machine; the numbers only show that the pipeline "
              "works)")
    print(f"results: {out}; regenerate docs/performance.md with: "
          f"python benchmarks/report.py --results {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
