"""Where a command's time went, by attnrag stage, from a py-spy profile.

    py-spy record -r 10 --nonblocking -f raw -o demo.spy -- attnrag demo --out demo-out --precision fp32
    python scripts/profile_stages.py demo.spy --rate 10 --out docs/results/demo-fp32/profile-before.md

Each sample's stack is assigned to the innermost frame that names a stage (so the reader's dev
evaluation inside its fine-tuning counts as evaluation, not as training); samples with no such
frame are start-up, imports and bookkeeping. Sampling at ``rate`` Hz, a stage's seconds are its
samples / rate (py-spy's --nonblocking sampling costs the process about nothing).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

#: (function name, file name ending) -> stage; the file is checked only where it is given
RULES: list[tuple[str, str | None, str]] = [
    ("_teacher_cache", "trainer.py", "teacher pass (distillation candidates scored)"),
    ("_eval_reader", "trainer.py", "trainer's dev evaluations"),
    ("_eval_retriever", "trainer.py", "trainer's dev evaluations"),
    ("_indicators", "trainer.py", "trainer's dev evaluations"),
    ("_stage_reader", "trainer.py", "reader fine-tuning"),
    ("_train_retriever", "trainer.py", "retriever training"),
    ("_stage_online", "trainer.py", "retriever training"),
    ("_stage_supervised", "trainer.py", "retriever training"),
    ("evaluate_retrieval", "retrieval.py", "test retrieval"),
    ("evaluate_qa", "qa.py", "test generation (EM / F1)"),
    ("tune_hybrid_weight", "retrieval.py", "hybrid weight tuning (dev)"),
    ("build", "lexical.py", "BM25 index build"),
    ("build_index", "index.py", "dense index (re)encoding"),
    ("_refresh_index", "trainer.py", "dense index (re)encoding"),
    ("indicators", "paper.py", "indicators (test)"),
    ("export_retriever", None, "export"),
    ("_checkpoint", "trainer.py", "checkpoints and saving"),
    ("save", "decoder.py", "checkpoints and saving"),
    ("save", "encoder.py", "checkpoints and saving"),
    ("write_world", "synth.py", "world generation"),
    ("generate_world", "synth.py", "world generation"),
    ("from_pretrained", "decoder.py", "model loading"),
    ("from_pretrained", "encoder.py", "model loading"),
    ("load_indexed_corpus", "store.py", "model loading"),
]
OTHER = "start-up, imports, bookkeeping"


def frame_parts(frame: str) -> tuple[str, str]:
    """``"name (path/file.py:12)"`` -> ``("name", "path/file.py")``."""
    name, _, rest = frame.partition(" (")
    return name.strip(), rest.rsplit(":", 1)[0]


def stage_of(stack: list[str]) -> str:
    for frame in reversed(stack):  # innermost first
        name, path = frame_parts(frame)
        for rule_name, suffix, stage in RULES:
            if name == rule_name and (suffix is None or path.endswith(suffix)):
                return stage
    return OTHER


def profile(path: Path) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        counts[stage_of(stack.split(";"))] += int(n)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profiles", nargs="+", type=Path, help="py-spy raw files (label=path to name a column)")
    parser.add_argument("--rate", type=float, default=10.0, help="py-spy's sampling rate (Hz)")
    parser.add_argument("--out", type=Path, help="write the markdown table here (and the counts as .json)")
    args = parser.parse_args()
    columns = {}
    for item in args.profiles:
        label, _, path = str(item).rpartition("=")
        columns[label or Path(path).stem] = profile(Path(path))
    stages = [s for _, _, s in RULES] + [OTHER]
    stages = [s for i, s in enumerate(stages) if s not in stages[:i] and any(c[s] for c in columns.values())]
    head = "| stage | " + " | ".join(f"{c} (s) | {c} share" for c in columns) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(columns)]
    totals = {c: sum(v.values()) for c, v in columns.items()}
    for stage in sorted(stages, key=lambda s: -next(iter(columns.values()))[s]):
        cells = [f"{columns[c][stage] / args.rate:.0f} | {columns[c][stage] / max(totals[c], 1):.1%}" for c in columns]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines.append("| **sampled total** | " + " | ".join(f"**{totals[c] / args.rate:.0f}** | 100%" for c in columns) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps(
            {"rate_hz": args.rate, "samples": {c: dict(v) for c, v in columns.items()}}, indent=2) + "\n")


if __name__ == "__main__":
    main()
