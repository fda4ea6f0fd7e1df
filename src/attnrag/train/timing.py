"""How long will a distillation take? One estimator, fed by a short run's own metrics log.

Two pilots predict a full run: the pilot inside every cached distillation (the ``pilot`` loop, before
the full ``distill`` loop of the same run) and ``diagnose --pilot``'s short run (a whole run at a
small budget). Both estimate from what they measured, linearly in what scales with the budget:

- ``prepare``: from the loop's start event to its first step, less one step: the candidates' fixed
  embeddings (a query tower encodes every distillation question's candidates once; a pilot logged
  before 2026-12-07 also counts its dev retrieval here, which does not scale: an overestimate where
  the full loop is short); scaled by the full run's questions over the pilot's;
- ``step``: seconds per optimiser step (first to last logged step), times the full run's steps, times
  the full run's questions per step over the pilot's (a tied tower's pilot since 2026-12-07 takes 8 a
  step: its step re-embeds every candidate, so its cost grows with the batch, measured 0.85-1.10 of
  the actual loop; a query tower's pilot keeps the run's batch, whose step is mostly the optimiser's
  fixed cost and would not scale: docs/results/pilot-validation/repilot-b8/);
- ``refresh``: one corpus re-encoding of a tied tower (the ``index_refresh`` after the loop, or a
  pilot's ``pilot_pool_encoded``: the re-encoding of its dev pool, scaled by corpus / pool passages),
  times the full run's evaluations, each of which re-encodes the corpus first.

Why from the log: each of its lines carries its time, so the same parser checks the estimate against
any finished run, the ones measured before this module existed included
(:mod:`attnrag.analysis.validation`), and a pilot needs no timing code of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.formats import iter_json_objects
from ..errors import InputError


def read_metrics(path: str | Path) -> list[dict]:
    """A run's ``metrics.jsonl``, line by line; a line that is not a JSON object with a numeric
    ``time`` raises :class:`~attnrag.errors.InputError` naming the file and line."""
    rows = []
    for number, row in iter_json_objects(Path(path)):
        if not isinstance(row.get("time"), (int, float)):
            raise InputError("expected a numeric 'time'", path=path, line=number, field="time")
        rows.append(row)
    return rows


@dataclass(frozen=True)
class LoopTimes:
    """Where one optimisation loop's time went, from the metrics log."""

    loop: str  # the loop's stage name in the log: "pilot" or "distill"
    steps: int  # optimiser steps logged
    step_seconds: float | None  # mean seconds per step (None: fewer than two steps logged)
    prepare_seconds: float | None  # start event -> first step, less one step
    refresh_seconds: float | None  # the corpus re-encoding right after the loop (None: the tower is not re-encoded)


def loop_times(rows: list[dict], loop: str, start_event: str | tuple[str, ...]) -> LoopTimes | None:
    """The times of the loop logged as stage ``loop`` (``None`` where it did not run), its preparation
    counted from the last of the ``start_event`` names logged before its first step (for a pilot,
    ``pilot_dev_retrieved``, after its dev retrieval, in runs since 2026-12-07, else ``targets``, which
    counts that retrieval as preparation too; ``pilot`` for the full loop after it)."""
    names = (start_event,) if isinstance(start_event, str) else start_event
    positions = [i for i, r in enumerate(rows) if r.get("stage") == loop and "loss" in r]
    if not positions:
        return None
    first, last = positions[0], positions[-1]
    steps = [rows[i]["time"] for i in positions]
    per_step = (steps[-1] - steps[0]) / (len(steps) - 1) if len(steps) > 1 else None
    start = next((rows[i]["time"] for i in range(first - 1, -1, -1) if rows[i].get("event") in names), None)
    prepare = None if start is None or per_step is None else max(0.0, steps[0] - start - per_step)
    after = rows[last + 1] if last + 1 < len(rows) else None
    refresh = None
    if after is not None and after.get("event") == "index_refresh":
        refresh = after["time"] - steps[-1]
    elif after is not None and after.get("event") == "pilot_pool_encoded" and after.get("passages"):
        refresh = (after["time"] - steps[-1]) * after["corpus"] / after["passages"]
    return LoopTimes(loop, len(steps), per_step, prepare, refresh)


def evaluations(steps: int, eval_every: int | None) -> int:
    """How often a loop of ``steps`` evaluates: every ``eval_every`` steps and at the last one. A tied
    tower re-encodes the corpus before each (:meth:`attnrag.train.trainer.Trainer._train_on_targets`)."""
    if steps < 1:
        return 0
    marks = set(range(eval_every, steps + 1, eval_every)) if eval_every else set()
    return len(marks | {steps})


def estimate_loop_seconds(times: LoopTimes, steps: int, question_ratio: float, refreshes: int,
                          batch_ratio: float = 1.0) -> float | None:
    """The seconds of a loop of ``steps`` on ``question_ratio`` times the measured loop's questions,
    ``batch_ratio`` times its questions per step, with ``refreshes`` corpus re-encodings (0 for a query
    tower): the module's linear estimate."""
    if times.step_seconds is None or times.prepare_seconds is None:
        return None
    return (times.prepare_seconds * question_ratio + times.step_seconds * batch_ratio * steps
            + (times.refresh_seconds or 0.0) * refreshes)


def pilot_estimate(rows: list[dict], distill_steps: int, eval_every: int | None,
                   distill_batch_size: int | None = None) -> float | None:
    """A pilot's estimate of the full distillation loop (after the pilot) of ``distill_steps`` on the
    run's distillation questions (its ``targets`` event), from the pilot loop of ``rows``: its
    preparation, steps and re-encoding. A pilot whose event records its ``batch_size`` has its step
    time scaled to ``distill_batch_size`` questions a step (older pilots ran at the full run's batch).
    ``None`` where the log holds no pilot."""
    pilot = loop_times(rows, "pilot", ("targets", "pilot_dev_retrieved"))
    event = next((r for r in rows if r.get("event") == "pilot"), None)
    targets = next((r for r in rows if r.get("event") == "targets"), None)
    if pilot is None or event is None or targets is None or not event.get("questions"):
        return None
    refreshes = evaluations(distill_steps, eval_every) if pilot.refresh_seconds is not None else 0
    ratio = distill_batch_size / event["batch_size"] if distill_batch_size and event.get("batch_size") else 1.0
    return estimate_loop_seconds(pilot, distill_steps, targets["questions"] / event["questions"], refreshes, ratio)


def full_loop_seconds(rows: list[dict]) -> float | None:
    """What the full distillation loop after a run's pilot took: from the ``pilot`` event (the pilot
    has just restored the retriever) to the loop's last line (its final evaluation, after the last
    re-encoding); ``None`` without a pilot or a loop after it."""
    event = next((r for r in rows if r.get("event") == "pilot"), None)
    if event is None or loop_times(rows, "distill", "pilot") is None:
        return None
    actual = next(r["time"] for r in reversed(rows) if r.get("stage") == "distill") - event["time"]
    return actual if actual > 0 else None


def in_run_estimate(rows: list[dict], distill_steps: int, eval_every: int | None,
                    distill_batch_size: int | None = None, pilot_rows: list[dict] | None = None) -> dict | None:
    """The pilot's estimate of the full loop (:func:`pilot_estimate`) against what that loop took
    (:func:`full_loop_seconds`). The pilot is the run's own, or ``pilot_rows``': another log's pilot
    of the same distillation (a pilot re-run on its own, ``pilot_only``). ``None`` where the run logged
    no pilot or no full loop after it."""
    pilot_log = rows if pilot_rows is None else pilot_rows
    estimate = pilot_estimate(pilot_log, distill_steps, eval_every, distill_batch_size)
    actual = full_loop_seconds(rows)
    if estimate is None or actual is None:
        return None
    pilot = loop_times(pilot_log, "pilot", ("targets", "pilot_dev_retrieved"))
    full = loop_times(rows, "distill", "pilot")
    return {"estimated_seconds": round(estimate, 1), "actual_seconds": round(actual, 1),
            "ratio": round(estimate / actual, 3), "pilot_step_seconds": round(pilot.step_seconds, 4),
            "full_step_seconds": None if full.step_seconds is None else round(full.step_seconds, 4),
            "refreshes": evaluations(distill_steps, eval_every) if pilot.refresh_seconds is not None else 0}
