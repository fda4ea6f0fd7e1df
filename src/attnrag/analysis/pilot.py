"""``diagnose --pilot``: distil a copy of the retriever briefly and measure, on dev, whether it moved.

The indicators and the teacher check predict from the reader alone. The pilot asks the question
itself, small: the trainer's own ``offtheshelf-distill`` (the same teacher, loss, tower and
optimiser a full run uses) on a slice of the training questions for a few dozen steps, in a
temporary run directory, then answer recall@1 and @5 on dev questions (DPR answer matching, so no
gold passage ids are needed) of the retriever before and after, paired question by question with
a 95% bootstrap interval. It also times itself, and from its teacher pass and steps estimates what
the full run would take on this machine.

Why dev and answers: the pilot must not look at test questions, and the users it is for have
answers but rarely gold passage ids. Why a short run predicts a long one: the first steps of
distillation move the query tower toward the teacher's favourites; if those are not the passages
with the answer, more steps move it further the wrong way (measured: ``docs/analysis.md``).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from ..data.formats import load_corpus_dir
from ..data.records import QAExample
from ..errors import InputError
from ..evaluate.bootstrap import paired_bootstrap
from ..evaluate.metrics import dpr_tokens, tokens_have_answer
from ..run import RunDir
from .config import PilotConfig


def answer_hits(retrieved: list[list[str]], passages: dict, examples: list[QAExample], k: int) -> np.ndarray:
    """1.0 where one of the top ``k`` passages contains a gold answer (DPR matching), per question."""
    out = []
    for row, e in zip(retrieved, examples, strict=True):
        answers = [dpr_tokens(a) for a in e.answers]
        out.append(float(any(tokens_have_answer(dpr_tokens(passages[p].text), answers) for p in row[:k])))
    return np.array(out)


def _retrieved(system, examples: list[QAExample], k: int) -> list[list[str]]:
    from ..evaluate.retrieval import evaluate_retrieval

    system.retriever.eval()
    return evaluate_retrieval(system.index, system.passages, system.retriever, examples, ks=[k])["retrieved_ids"]


def _timings(run_dir: Path, started: float) -> dict:
    """Where a finished pilot's time went, from its metrics log's times: loading and retrieval up to
    the teacher pass, the teacher pass, and the seconds per distillation step."""
    rows = [json.loads(line) for line in RunDir(run_dir).metrics_path.read_text(encoding="utf-8").splitlines()]
    steps = [r["time"] for r in rows if r.get("stage") == "distill" and "loss" in r]
    begin = next((r["time"] for r in rows if r.get("event") == "teacher_start"), None)
    end = next((r["time"] for r in rows if r.get("event") == "teacher"), None)
    per_step = (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 else None
    return {"setup_seconds": None if begin is None else round(begin - started, 2),
            "teacher_seconds": None if begin is None or end is None else round(end - begin, 2),
            "step_seconds": None if per_step is None else round(per_step, 4), "steps_logged": len(steps)}


def run_pilot(train: dict, pilot: PilotConfig | None = None, progress: bool = True) -> dict:
    """Distil a copy of ``train``'s retriever on a slice and compare it with the original on dev.

    ``train``: :class:`~attnrag.train.config.TrainConfig` fields (``data`` with train and dev splits,
    ``reader``, ``retriever``, ``index``, the teacher ...); the setting is ``offtheshelf-distill``
    and the budget is ``pilot``'s. The full run the estimate is for is ``train``'s own budget
    (``distill_questions``, ``distill_steps``).
    """
    from ..evaluate.qa import load_system
    from ..train.config import TrainConfig
    from ..train.trainer import Trainer

    pilot = pilot or PilotConfig()
    full = TrainConfig(**{**train, "setting": "offtheshelf-distill", "out": train.get("out") or "unused"})
    _, splits = load_corpus_dir(full.data, full.distractors)
    dev = [e for e in splits.get("dev") or [] if e.answers][: pilot.dev_questions]
    train_split = splits.get("train") or []
    if not dev:
        raise InputError("the pilot compares retrievers on dev.jsonl, which is missing or has no answers",
                         path=full.data)
    if not train_split:
        raise InputError("the pilot distils on train.jsonl, which is missing", path=full.data)
    n_full = min(full.distill_questions or len(train_split), len(train_split))
    questions = min(pilot.questions, n_full)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="attnrag-pilot-") as tmp:
        run_dir = Path(tmp) / "pilot"
        cfg = dataclasses.replace(full, out=str(run_dir), distill_questions=questions, distill_steps=pilot.steps,
                                  distill_batch_size=min(pilot.batch_size, questions), eval_every=10 ** 9,
                                  eval_questions=0, indicator_questions=0, save_every=10 ** 9)
        Trainer(cfg, progress=progress).run()
        timings = _timings(run_dir, start)
        k = max(5, full.n_passages)
        device = None if full.device == "auto" else full.device
        # the retriever before: the one the pilot started from, over the index it distilled against
        before = load_system(reader=full.reader, retriever=full.retriever, load_reader=False, device=device,
                             index=full.index or RunDir(run_dir).base_index_dir)
        after = load_system(run_dir, load_reader=False, device=device)
        ids_before, ids_after = _retrieved(before, dev, k), _retrieved(after, dev, k)
    hits = {f"answer_recall@{j}": (answer_hits(ids_before, before.passages, dev, j),
                                   answer_hits(ids_after, after.passages, dev, j)) for j in (1, 5)}
    changes = {name: {"before": float(b.mean()), "after": float(a.mean()), **paired_bootstrap(a, b)}
               for name, (b, a) in hits.items()}
    r1 = changes["answer_recall@1"]
    if r1["low"] > pilot.margin:
        label = "effective"
    elif r1["high"] <= pilot.margin:  # a gain above the margin is outside the interval
        label = "ineffective"
    else:
        label = "uncertain"
    pilot_seconds = time.time() - start  # the whole pilot: its run and the dev comparison
    estimate = None
    if None not in (timings["setup_seconds"], timings["teacher_seconds"], timings["step_seconds"]):
        per_question = timings["teacher_seconds"] / questions
        estimate = timings["setup_seconds"] + per_question * n_full + timings["step_seconds"] * full.distill_steps
    return {
        "verdict": label,
        "message": (f"pilot ({questions} questions, {pilot.steps} steps): dev answer recall@1 "
                    f"{r1['before']:.3f} -> {r1['after']:.3f} ({r1['delta']:+.3f}, 95% [{r1['low']:+.3f}, "
                    f"{r1['high']:+.3f}], n={r1['n']})"),
        "changes": changes,
        "n_dev": len(dev),
        "pilot": dataclasses.asdict(pilot),
        "wall_seconds": round(pilot_seconds, 1),
        "timings": timings,
        "full_run": {"distill_questions": n_full, "distill_steps": full.distill_steps,
                     "estimated_seconds": None if estimate is None else round(estimate, 1),
                     "pilot_share": None if not estimate else round(pilot_seconds / estimate, 3)},
    }



__all__ = ["PilotConfig", "answer_hits", "run_pilot"]
