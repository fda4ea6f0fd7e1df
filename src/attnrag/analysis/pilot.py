"""``diagnose --pilot``: distil a copy of the retriever briefly and measure, on dev, whether it moved.

The indicators and the teacher check predict from the reader alone. The pilot asks the question
itself, small: the trainer's own pilot, the one inside every cached distillation (the same teacher,
loss, tower and optimiser a full run uses), run alone (``pilot_only``) in a temporary run
directory: the teacher scores a slice of the training questions, a copy of the retriever trains on
them for a few dozen small steps, then answer recall@1 and @5 on dev questions (DPR answer
matching, so no gold passage ids are needed) of the retriever before and after, paired question by
question with a 95% bootstrap interval (a tied tower re-ranks each dev question's top
``pilot_pool``, not the corpus). It also times itself, and from its teacher pass and steps
estimates what the full run would take on this machine.

Why dev and answers: the pilot must not look at test questions, and the users it is for have
answers but rarely gold passage ids. Why a short run predicts a long one: the first steps of
distillation move the query tower toward the teacher's favourites; if those are not the passages
with the answer, more steps move it further the wrong way (measured: ``docs/analysis.md``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from ..data.formats import load_corpus_dir
from ..distill.targets import TARGETS, TEACHER_TARGETS
from ..errors import InputError
from ..evaluate.bootstrap import paired_bootstrap
from ..evaluate.metrics import answer_hits
from ..run import RunDir
from ..train.timing import LoopTimes, estimate_loop_seconds, evaluations, loop_times, read_metrics
from .config import PilotConfig


def _timings(rows: list[dict], started: float) -> dict:
    """Where a finished pilot's time went, from its metrics log's times: set-up and retrieval up to
    the targets (the teacher pass's start, or the ``targets`` event of a target without a reader),
    the teacher pass (0 without one, or when another pilot's scores were reused), and its
    optimisation loop (:func:`attnrag.train.timing.loop_times`: preparation after the dev retrieval,
    seconds per step, a tied tower's corpus re-encoding, scaled from its dev pool's)."""
    start_event = next((r for r in rows if r.get("event") == "teacher_start"), None)
    begin = None if start_event is None else start_event["time"]
    end = next((r["time"] for r in rows if r.get("event") == "teacher"), None)
    targets = next((r["time"] for r in rows if r.get("event") == "targets"), None)
    setup_end = begin if begin is not None else targets
    loop = loop_times(rows, "pilot", ("targets", "pilot_dev_retrieved"))
    return {"setup_seconds": None if setup_end is None else round(setup_end - started, 2),
            "teacher_seconds": 0.0 if begin is None else None if end is None else round(end - begin, 2),
            "step_seconds": None if loop is None or loop.step_seconds is None else round(loop.step_seconds, 4),
            "prepare_seconds": None if loop is None or loop.prepare_seconds is None else round(loop.prepare_seconds, 2),
            "refresh_seconds": None if loop is None or loop.refresh_seconds is None else round(loop.refresh_seconds, 2),
            "steps_logged": 0 if loop is None else loop.steps,
            "teacher_rows_reused": 0 if start_event is None else start_event.get("cached", 0),
            "batch_size": next((r.get("batch_size") for r in rows if r.get("event") == "pilot"), None)}


def run_pilot(train: dict, pilot: PilotConfig | None = None, progress: bool = True) -> dict:
    """Distil copies of ``train``'s retriever on a slice, one per target, and compare each with the
    original on dev; recommend a target, or keeping the retriever, from the paired intervals.

    ``train``: :class:`~attnrag.train.config.TrainConfig` fields (``data`` with train and dev splits,
    ``reader``, ``retriever``, ``index``, the teacher ...); the setting is ``offtheshelf-distill``
    and the budget is ``pilot``'s. The configured ``target`` is piloted first and sets the report's
    ``verdict`` (is *this* distillation worth running?); ``pilot.targets`` adds the alternatives a
    user could choose instead (attention, DPR's answer match, ...), each with the loss it would train
    with. The targets that read the reader share one teacher pass. The full run the estimate is for
    is ``train``'s own budget (``distill_questions``, ``distill_steps``).
    """
    from ..train.config import TrainConfig

    pilot = pilot or PilotConfig()
    full = TrainConfig.from_dict({**train, "setting": "offtheshelf-distill", "out": train.get("out") or "unused"})
    targets = _targets_of(full.target, pilot.targets)
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
    per_target: dict[str, dict] = {}
    after_hits: dict[str, dict[str, np.ndarray]] = {}
    with tempfile.TemporaryDirectory(prefix="attnrag-pilot-") as tmp:
        # every pilot starts from the same retriever, over the index it distils against
        before_hits, scored_run, teacher_per_question = None, None, None
        index = full.index  # none given: the first pilot builds the base index, the others reuse it
        for target in targets:
            run_dir = Path(tmp) / target
            shared = (scored_run is not None and target in TEACHER_TARGETS
                      and RunDir(run_dir).share_teacher_cache(scored_run))  # one teacher pass for all of them
            # the trainer's own pilot (the one inside every distillation), alone: the teacher scores the
            # pilot's questions, a copy of the retriever trains on them, dev compares, the run stops
            cfg = dataclasses.replace(full, target=target, out=str(run_dir), index=index, distill_questions=questions,
                                      pilot_only=True, pilot_steps=pilot.steps, pilot_questions=questions,
                                      pilot_batch_size=pilot.batch_size, pilot_dev_questions=pilot.dev_questions,
                                      eval_questions=0, indicator_questions=0)
            began = time.time()
            _distil(cfg, progress)
            rows = read_metrics(RunDir(run_dir).metrics_path)
            event = next((r for r in rows if r.get("event") == "pilot"), None)
            if event is None:
                raise InputError("the pilot logged no dev comparison: dev.jsonl needs at least two questions "
                                 "with answers", path=full.data)
            timings = _timings(rows, began)
            if target in TEACHER_TARGETS and not shared and timings["teacher_seconds"] is not None:
                scored_run, teacher_per_question = run_dir, timings["teacher_seconds"] / questions
            # a full run with this target pays the teacher pass even where the pilot reused one
            full_teacher = teacher_per_question if target in TEACHER_TARGETS else 0.0
            index = index or str(RunDir(run_dir).base_index_dir)
            hits = {name: {side: np.asarray(values, dtype=float) for side, values in pair.items()}
                    for name, pair in event["hits"].items()}
            before_hits = before_hits or {name: pair["before"] for name, pair in hits.items()}
            after_hits[target] = {name: pair["after"] for name, pair in hits.items()}
            per_target[target] = _one_pilot(before_hits, after_hits[target], timings, full_teacher, pilot,
                                            dataclasses.replace(full, distill_questions=n_full), questions,
                                            cfg.resolved_loss, time.time() - began)
    first = per_target[targets[0]]
    recommendation = recommend(per_target, after_hits, pilot.margin)
    lines = [f"pilot ({questions} questions, {pilot.steps} steps), dev answer recall@1 from "
             f"{first['changes']['answer_recall@1']['before']:.3f} (n={len(dev)}):"]
    lines += [f"  {t}: {_change_text(r['changes']['answer_recall@1'])} -> {r['verdict']}" for t, r in per_target.items()]
    lines.append(f"  recommended: {recommendation['message']}")
    return {
        "verdict": first["verdict"],
        "target": targets[0],
        "message": "\n".join(lines),
        "targets": per_target,
        "recommendation": recommendation,
        "n_dev": len(dev),
        "pilot": dataclasses.asdict(pilot),
        "train": full.to_dict(),  # the distillation every target's pilot ran (target and budget replaced)
        "wall_seconds": round(time.time() - start, 1),  # every pilot and its dev comparison
    }


def _targets_of(configured: str, extra: tuple[str, ...] | list[str]) -> list[str]:
    """The configured target first, then the alternatives, each once; unknown names are refused."""
    targets = [configured, *[t for t in extra if t != configured]]
    bad = [t for t in targets if t not in TARGETS or t == "gold"]
    if bad:
        raise InputError(f"pilot targets {bad} unknown: choose from {', '.join(t for t in TARGETS if t != 'gold')} "
                         "(gold needs gold passage ids, which the pilot does without)", field="pilot.targets")
    return list(dict.fromkeys(targets))


def _distil(cfg, progress: bool) -> None:
    from ..train.trainer import Trainer

    Trainer(cfg, progress=progress).run()


def _one_pilot(before: dict[str, np.ndarray], after: dict[str, np.ndarray], timings: dict,
               teacher_per_question: float | None, pilot: PilotConfig, full, questions: int, loss: str,
               seconds: float) -> dict:
    """One target's pilot: the paired change of each recall, its verdict against ``pilot.margin``, and
    the full run's wall time (``full``: its :class:`~attnrag.train.config.TrainConfig`) estimated from
    the pilot's own log: set-up, ``teacher_per_question`` (0 for a target without a reader) x the full
    run's questions, then its optimisation loops by :func:`attnrag.train.timing.estimate_loop_seconds`
    (the full run's own in-run pilot, then its ``distill_steps``, a tied tower re-encoding the corpus
    at each evaluation) from the ``questions`` the pilot distilled on."""
    changes = {name: {"before": float(before[name].mean()), "after": float(after[name].mean()),
                      **paired_bootstrap(after[name], before[name])} for name in before}
    r1 = changes["answer_recall@1"]
    if r1["low"] > pilot.margin:
        label = "effective"
    elif r1["high"] <= pilot.margin:  # a gain above the margin is outside the interval
        label = "ineffective"
    else:
        label = "uncertain"
    n_full = full.distill_questions
    estimate = None
    if None not in (timings["setup_seconds"], timings["step_seconds"], timings["prepare_seconds"], teacher_per_question):
        loop = LoopTimes("distill", timings["steps_logged"], timings["step_seconds"], timings["prepare_seconds"],
                         timings["refresh_seconds"])
        tied = timings["refresh_seconds"] is not None
        own_pilot = min(full.pilot_questions, n_full) if full.pilot_steps else 0
        batch = timings["batch_size"] or 1  # the questions per step this pilot took
        own_refresh = int(tied and own_pilot > 0 and full.pilot_pool == 0)  # else a dev pool, not the corpus
        estimate = (timings["setup_seconds"] + teacher_per_question * n_full
                    + estimate_loop_seconds(loop, full.pilot_steps, own_pilot / questions, own_refresh,
                                            min(full.resolved_pilot_batch_size, own_pilot or 1) / batch)
                    + estimate_loop_seconds(loop, full.distill_steps, n_full / questions,
                                            evaluations(full.distill_steps, full.eval_every) if tied else 0,
                                            min(full.distill_batch_size, n_full) / batch))
    return {"verdict": label, "loss": loss, "changes": changes, "timings": timings, "wall_seconds": round(seconds, 1),
            "full_run": {"distill_questions": n_full, "distill_steps": full.distill_steps,
                         "estimated_seconds": None if estimate is None else round(estimate, 1),
                         "pilot_share": None if not estimate else round(seconds / estimate, 3)}}


def recommend(per_target: dict[str, dict], after_hits: dict[str, dict[str, np.ndarray]], margin: float) -> dict:
    """The target to distil with, or ``None``: keep the retriever.

    Only a target whose own pilot is ``effective`` (its recall@1 interval above ``margin``) can be
    recommended. Among those, the one with the highest dev answer recall@1 after its pilot, unless a
    target that needs no reader pass (``answer``) is level with it (the paired interval of the two
    retrievers' difference contains 0): then that one, which gives the same retriever within noise at
    a fraction of the cost (no reader, no teacher pass). Each comparison is in ``versus``."""
    effective = [t for t, r in per_target.items() if r["verdict"] == "effective"]
    if not effective:
        return {"target": None, "versus": {}, "message": (
            f"keep the retriever you have: no piloted target ({', '.join(per_target)}) raised dev answer "
            f"recall@1 with a 95% interval above {margin:+.3f}")}
    key = "answer_recall@1"
    best = max(effective, key=lambda t: float(after_hits[t][key].mean()))
    versus = {t: paired_bootstrap(after_hits[best][key], after_hits[t][key]) for t in per_target if t != best}
    level_readerless = [t for t in effective if t != best and t not in TEACHER_TARGETS and versus[t]["low"] <= 0]
    if best in TEACHER_TARGETS and level_readerless:
        choice = level_readerless[0]
        why = (f"level with {best} ({best} - {choice}: {_change_text(versus[choice])}) and needs no reader "
               "pass, so it gives the same retriever within noise for less")
    else:
        choice = best
        others = "; ".join(f"{best} - {t}: {_change_text(v)}" for t, v in versus.items())
        why = "highest dev answer recall@1 after its pilot" + (f" ({others})" if others else "")
    return {"target": choice, "best": best, "versus": versus, "message": f"{choice}: {why}"}


def _change_text(change: dict) -> str:
    return f"{change['delta']:+.3f} [{change['low']:+.3f}, {change['high']:+.3f}]"


__all__ = ["PilotConfig", "answer_hits", "recommend", "run_pilot"]
