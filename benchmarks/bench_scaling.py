"""Group ``scaling``: how the plain forward and the teacher pass grow with K and with passage length.

For every K in (5, 10, 20) and passage length in (50, 100, 200) content tokens, the same batch is
timed with ``plain`` (``reader._hidden``) and ``teacher`` (``capture_token_attention``), interleaved,
median after warm-up (see ``bench_teacher_pass`` for the inputs). Writes a table into the results
and a plot (``benchmarks/scaling.png``): time against sequence length, and the teacher/plain ratio.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _bench import BENCH_DIR, apply_threads, log, machine_info, ratio, time_interleaved
from bench_teacher_pass import (
    PRECISION,
    READER,
    SIGNAL,
    load_reader,
    make_batch,
    methods_for,
    reader_precision,
)

FULL = {"ks": [5, 10, 20], "tokens": [50, 100, 200], "batch": 1, "warmup": 1, "repeats": 5}
SMOKE = {"ks": [1, 2], "tokens": [8, 16], "batch": 1, "warmup": 1, "repeats": 2}


def run(smoke: bool = False, reader=None, plot_path: Path | None = None, precision: str = PRECISION) -> dict:
    cfg = SMOKE if smoke else FULL
    reader = reader or load_reader(precision)
    rows = []
    for tokens in cfg["tokens"]:
        for k in cfg["ks"]:
            batch = make_batch(reader, k, tokens, cfg["batch"])
            seq_len = int(batch.input_ids.shape[1])
            log(f"scaling: K={k} tokens={tokens} L={seq_len}")
            timing = time_interleaved(methods_for(reader, batch, ("plain", "teacher")), cfg["warmup"],
                                      cfg["repeats"])
            rows.append({
                "k": k, "tokens_per_passage": tokens, "seq_len": seq_len, "batch": cfg["batch"],
                "plain": timing["plain"], "teacher": timing["teacher"],
                "time_teacher_over_plain": ratio(timing["teacher"]["median_s"], timing["plain"]["median_s"]),
                "cpu_time_teacher_over_plain": ratio(timing["teacher"]["cpu_median_s"],
                                                     timing["plain"]["cpu_median_s"]),
            })
    if plot_path is None:
        plot_path = BENCH_DIR / ("scaling-smoke.png" if smoke else "scaling.png")
    plot = write_plot(rows, plot_path)
    return {
        "description": "plain forward vs teacher pass time by K and passage length (same batch, interleaved, "
                       "median after warm-up)",
        "config": {**cfg, "reader": READER, "signal": SIGNAL, "dtype": "float32", "device": "cpu",
                   **reader_precision(reader)},
        "rows": rows,
        "plot": plot,
        "machine": machine_info(),
    }


def write_plot(rows: list[dict], path: Path) -> str | None:
    """Two panels: median time against sequence length (per passage length), and the time ratio."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("scaling: matplotlib is not installed, no plot")
        return None
    fig, (ax_t, ax_r) = plt.subplots(1, 2, figsize=(11, 4.2))
    lengths = sorted({r["tokens_per_passage"] for r in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, tokens in enumerate(lengths):
        sub = sorted((r for r in rows if r["tokens_per_passage"] == tokens), key=lambda r: r["seq_len"])
        x = [r["seq_len"] for r in sub]
        c = colours[i % len(colours)]
        ax_t.plot(x, [r["plain"]["median_s"] for r in sub], "o-", color=c,
                  label=f"plain, {tokens} tok/passage")
        ax_t.plot(x, [r["teacher"]["median_s"] for r in sub], "s--", color=c,
                  label=f"teacher, {tokens} tok/passage")
        for r in sub:
            ax_t.annotate(f"K={r['k']}", (r["seq_len"], r["plain"]["median_s"]), fontsize=7,
                          textcoords="offset points", xytext=(3, -9))
        ax_r.plot(x, [r["time_teacher_over_plain"] for r in sub], "o-", color=c,
                  label=f"{tokens} tok/passage")
    ax_t.set_xscale("log")
    ax_t.set_yscale("log")
    ax_t.set_xlabel("sequence length L (tokens, log scale)")
    ax_t.set_ylabel("median seconds per pass (log scale)")
    ax_t.set_title("plain forward (solid) vs teacher pass (dashed)")
    ax_t.grid(alpha=0.3)
    ax_t.legend(fontsize=7)
    ax_r.axhline(1.10, color="grey", ls=":", label="1.10 target")
    ax_r.axhline(1.0, color="black", lw=0.5)
    ax_r.set_xscale("log")
    ax_r.set_xlabel("sequence length L (tokens, log scale)")
    ax_r.set_ylabel("teacher / plain (median time)")
    ax_r.set_title("overhead of the capture")
    ax_r.grid(alpha=0.3)
    ax_r.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path.relative_to(BENCH_DIR.parent)) if path.is_relative_to(BENCH_DIR.parent) else str(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--precision", default=PRECISION, help="reader precision: fp32 (default), bf16 or auto")
    args = ap.parse_args(argv)
    apply_threads()
    print(json.dumps(run(smoke=args.smoke, precision=args.precision), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
