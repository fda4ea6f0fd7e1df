"""``attnrag demo``: the paper's four-row comparison on the embedded world, on a laptop CPU.

The demo is a preset of the paper grid (:meth:`~attnrag.experiment.config.PaperConfig.demo`: its
rows and budget), run by :func:`~attnrag.experiment.paper.run_paper_experiment`, plus two things a
first-time user wants: the fine-tuned-distillation retriever exported as a sentence-transformers
model, and ``report.md``. Rows (all evaluated on the same ``test.jsonl``):

1. **off-the-shelf checkpoint**: the pretrained reader with the zero-shot retriever;
2. **off-the-shelf distillation**: the retriever distilled from the *un-fine-tuned* reader;
3. **fine-tuned reader, zero-shot retriever**: Step 1's fine-tuned reader, evaluated with the zero-shot
   retriever (the demo fine-tunes the reader once);
4. **fine-tuned distillation** (the paper grid's Step 1): the retriever distilled from the fine-tuned reader.

Every stage is resumable: re-running the command skips finished rows and resumes unfinished runs.
"""

from __future__ import annotations

from pathlib import Path

import sys

from ..io import atomic_open, write_json
from .config import PaperConfig, row_plan
from .eta import DemoClock
from .paper import run_paper_experiment
from .report import demo_table, render_demo_report


def run_demo(out: str | Path, quick: bool = False, config: PaperConfig | None = None,
             progress: bool = True) -> dict:
    """Run (or resume) the demo into ``out`` and return the content of its ``results.json``."""
    out = Path(out)
    cfg = config or PaperConfig.demo(quick=quick)
    clock = DemoClock(cfg.to_dict(), _precision_here(cfg), [r.key for r in row_plan(cfg)],
                      say=lambda m: print(m, file=sys.stderr, flush=True)) if progress else None
    results = run_paper_experiment(out, data=None, budget="demo-quick" if quick else "demo", config=cfg,
                                   progress=progress, clock=clock)
    rows = results["rows"]
    export_dir = out / "retriever-export"
    step1 = rows.get("step1", {})
    if step1.get("status") == "done" and not (export_dir / "modules.json").is_file():
        from ..api import export_retriever

        measured = {k: step1[k] for k in ("em", "f1", "answer_recall@1", "answer_recall@5", "gold_recall@1",
                                          "gold_recall@5") if k in step1}
        export_retriever(out / "runs" / "step1", export_dir,
                         metrics={f"test ({'demo world' if cfg.size == 'default' else cfg.size})":
                                  {"n": step1.get("n"), **measured}})
    results["demo_table"] = demo_table(rows)
    write_json(out / "results.json", results)
    with atomic_open(out / "report.md") as fh:
        fh.write(render_demo_report(results))
    return results


def _precision_here(cfg: PaperConfig) -> str:
    """``fp32`` or ``bf16``: what the decoder reader's matmuls run in on this machine with ``cfg``."""
    from ..parallel import pick_device
    from ..reader.decoder import resolve_precision

    device = pick_device(None if cfg.train.device == "auto" else cfg.train.device)
    return "fp32" if resolve_precision(cfg.train.precision, device) is None else "bf16"


__all__ = ["run_demo"]
