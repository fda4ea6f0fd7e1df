"""Out of sample: how often does each of ``diagnose``'s predictors call a distillation right?

One record per measured distillation (a row of a paper-grid ``results.json`` that trained a retriever
from targets), with every predictor that run measured *without test questions*:

- ``indicators``: the paper's share / rho of the row's teacher, only where the experiment measured them
  on dev questions (``indicator_split`` "dev"; older experiments measured them on test, which a
  prediction must not see, so they are left out here);
- ``gold_check`` and ``answer_check``: the run's teacher check on its distillation (training)
  questions, teacher top-1 against the first stage's top-1, gold ids and label-free;
- ``pilot``: the run's own pilot (dev answer recall@1 before and after a short distillation);
- ``time_estimate``: not a predictor of the outcome but of the cost: the pilot's estimate of the full
  distillation loop after it (:func:`attnrag.train.timing.in_run_estimate`) against that loop's time,
  where the run directory was committed beside the results.

The outcome is on test: gold recall@1 of the final retriever the row reports (fused with BM25 where
the row was fused and dev picked the fused system, against the hybrid of the zero-shot retriever;
else the dense retriever against the one it started from) gained more than :data:`MARGIN`.

Each predictor is a rule without a fitted number except the indicators, whose rho cut is refitted on
the other data sets (:func:`attnrag.analysis.thresholds.fit`) for each held-out set. Scoring follows
issue #42: ``uncertain`` counts as wrong, and the baseline to beat is the other sets' majority outcome
guessed for every row of the held-out set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import InputError
from ..run import RunDir
from ..train.timing import in_run_estimate, read_metrics
from .diagnose import SHARE_KEY, combined_verdict, verdict
from .thresholds import MARGIN, MeasuredReader, fit

#: rows that train without any teacher worth predicting (gold labels: an upper bound)
NOT_PREDICTED = ("supervised",)
PREDICTORS = ("indicators", "gold_check", "answer_check", "pilot", "pilot_point", "diagnose", "diagnose_point")


@dataclass(frozen=True)
class Distillation:
    """One distillation, its predictors (``None`` where not measured without test questions) and outcome."""

    data: str
    row: str
    source: str
    start: str  # the row whose retriever it started from (dense); the fused outcome starts from "hybrid"
    gain: float  # test gold recall@1, dense retriever - the start row's
    final: str  # "dense" or "fused": the system dev picks, as the row reports it
    final_gain: float  # test gold recall@1 of that final system - its start's
    indicators: dict | None
    gold_check: dict | None  # {"difference", "low", "high", "n"} or the unpaired rates of an older run
    answer_check: dict | None
    pilot: dict | None  # the pilot's answer_recall@1 change {"before", "after", "difference", "low", "high"}
    pilot_seconds: float | None = None  # what the pilot cost inside its run
    row_seconds: float | None = None  # the whole row: teacher pass, pilot, training and evaluation
    teacher_stats: dict | None = None  # the run's teacher check as diagnose reads it (combined_verdict)
    time_estimate: dict | None = None  # the pilot's estimate of the full loop after it, and what it took
    timing_contended: bool = False  # other work shared the cores for part of the run: its times are not timings
    final_recall: float | None = None  # test gold recall@1 of the final system itself (to rank rows against each other)
    key: str = ""  # the row's name in its results file
    pilot_teacher_seconds: float | None = None  # the teacher pass over the pilot's own questions (its run's rate)
    pilot_rerun: bool = False  # the pilot is a re-run of this row's pilot alone (scripts/repilot.py), not its own
    pilot_questions: int | None = None  # the training questions the pilot distilled on (its teacher slice)

    @property
    def pilot_share(self) -> float | None:
        """The pilot's share of its full run's wall time (issue #42's target: at most 0.10), its own
        teacher pass included (what a pilot run on its own, as ``diagnose --pilot`` does, pays)."""
        if self.pilot_seconds is None or not self.row_seconds:
            return None
        return (self.pilot_seconds + (self.pilot_teacher_seconds or 0.0)) / self.row_seconds

    @property
    def outcome(self) -> bool:
        """Did the row's final retriever gain more than :data:`MARGIN` gold recall@1 on test?"""
        return self.final_gain > MARGIN


def collect(results_file: str | Path, data: str, variant: str | None = None, skip: Sequence[str] = (),
            baselines: str | Path | None = None, timing_contended: bool | Sequence[str] = False) -> list[Distillation]:
    """The distillations of one paper-grid ``results.json``. ``variant`` is appended to the row names
    (a seed, a scoring); ``skip`` names rows that another listed file already holds (the same run);
    ``baselines``: another results file of the same data and test split whose untrained rows
    (``offtheshelf``, ``hybrid``) stand in where this one did not run them; ``timing_contended``: the
    rows (``True``: all) whose wall times other work on the machine inflated for part of the run,
    kept out of the cost and time-estimate figures. A malformed file or field raises
    :class:`~attnrag.errors.InputError` naming the file (and line or field)."""
    path = Path(results_file)
    result = _read_results(path)
    rows = {key: (row, path) for key, row in result["rows"].items()}
    if baselines is not None:
        other = Path(baselines)
        base_rows = _read_results(other)["rows"]
        rows = {**{k: (base_rows[k], other) for k in ("offtheshelf", "hybrid") if k in base_rows}, **rows}
    for key, (row, where) in rows.items():
        if not isinstance(row, dict):
            raise InputError(f"expected an object, got {type(row).__name__}", path=where, field=f"rows.{key}")
    dev_indicators = result.get("indicator_split") == "dev"
    file_rates = [(rate, _candidates_of(path.parent / "runs" / key)) for key in rows
                  if (rate := _teacher_rate(path.parent / "runs" / key)) is not None]
    out = []
    for key, (row, _) in rows.items():
        if key in skip or not _distilled(key, row):
            continue
        field = f"rows.{key}"
        start = "step1" if key == "step2" else "offtheshelf"
        start_row, start_path = rows.get(start, ({}, path))
        if start_row.get("gold_recall@1") is None or row.get("gold_recall@1") is None:
            continue
        gain = (_number(row["gold_recall@1"], path, f"{field}.gold_recall@1")
                - _number(start_row["gold_recall@1"], start_path, f"rows.{start}.gold_recall@1"))
        final, final_gain = "dense", gain
        final_recall = _number(row["gold_recall@1"], path, f"{field}.gold_recall@1")
        fused = row.get("with_bm25") or {}
        hybrid, hybrid_path = rows.get("hybrid", ({}, path))
        dev = fused.get("dev_recall@1") or {}
        if (fused.get("gold_recall@1") is not None and hybrid.get("gold_recall@1") is not None and start == "offtheshelf"
                and dev.get("hybrid", -1) > dev.get("dense", math.inf)):
            final_gain = (_number(fused["gold_recall@1"], path, f"{field}.with_bm25.gold_recall@1")
                          - _number(hybrid["gold_recall@1"], hybrid_path, "rows.hybrid.gold_recall@1"))
            final = "fused"
            final_recall = _number(fused["gold_recall@1"], path, f"{field}.with_bm25.gold_recall@1")
        target = (row.get("target_stats") or {}).get("target")
        reads_reader = target not in ("answer", "gold") and not key.startswith("answer")
        stats = _teacher_stats(row.get("teacher_stats"), path, f"{field}.teacher_stats") if reads_reader else None
        pilot = row.get("pilot") or {}
        out.append(Distillation(
            data=data, row=f"{key} ({variant})" if variant else key, source=str(path), start=start,
            gain=round(gain, 4), final=final, final_gain=round(final_gain, 4), final_recall=round(final_recall, 4),
            indicators=_indicators(row, path, field) if dev_indicators and reads_reader else None,
            gold_check=_gold_check(stats), answer_check=(stats or {}).get("answer_check", {}).get("paired"),
            pilot=_interval(pilot.get("answer_recall@1"), path, f"{field}.pilot.answer_recall@1"),
            pilot_seconds=_number(pilot["seconds"], path, f"{field}.pilot.seconds") if "seconds" in pilot else None,
            row_seconds=_number(row["wall_seconds"], path, f"{field}.wall_seconds") if "wall_seconds" in row else None,
            teacher_stats=stats, time_estimate=_time_estimate(path.parent / "runs" / key) if pilot else None,
            key=key, pilot_questions=pilot.get("questions") if isinstance(pilot.get("questions"), int) else None,
            pilot_teacher_seconds=(_teacher_slice_seconds(path.parent / "runs" / key, pilot.get("questions"),
                                                                   file_rates) if pilot and reads_reader else None),
            timing_contended=timing_contended is True or (not isinstance(timing_contended, bool)
                                                           and key in timing_contended)))
    return out


def _time_estimate(run_dir: Path, pilot_dir: Path | None = None) -> dict | None:
    """The in-run pilot's estimate of the full distillation loop after it against that loop's time,
    from the run's committed ``metrics.jsonl`` and ``config.json`` (:func:`attnrag.train.timing.in_run_estimate`);
    ``None`` where the run directory was not kept beside the results."""
    layout = RunDir(run_dir)
    metrics, config = layout.metrics_path, layout.config_path
    if not (metrics.is_file() and config.is_file()):
        return None
    cfg = _read_json(config)
    if not isinstance(cfg, dict):
        cfg = {}
    steps, every, batch = cfg.get("distill_steps"), cfg.get("eval_every"), cfg.get("distill_batch_size")
    for name, value, optional in (("distill_steps", steps, False), ("eval_every", every, True),
                                  ("distill_batch_size", batch, True)):
        if not (isinstance(value, int) or (optional and value is None)):
            raise InputError(f"expected an integer, got {value!r}", path=config, field=name)
    pilot_rows = None
    if pilot_dir is not None:  # a pilot re-run alone: its log estimates, the row's own loop is the actual
        pilot_metrics = RunDir(pilot_dir).metrics_path
        if not pilot_metrics.is_file():
            return None
        pilot_rows = read_metrics(pilot_metrics)
    return in_run_estimate(read_metrics(metrics), steps, every, batch, pilot_rows)


def _teacher_rate(run_dir: Path) -> float | None:
    """Seconds per question of a run's own teacher pass, from its committed ``metrics.jsonl``
    (``teacher_start`` to ``teacher``, over the rows it scored, not those reused from a cache);
    ``None`` without a log or a pass of its own."""
    metrics = RunDir(run_dir).metrics_path
    if not metrics.is_file():
        return None
    rows = read_metrics(metrics)
    start = next((r for r in rows if r.get("event") == "teacher_start"), None)
    end = next((r for r in rows if r.get("event") == "teacher"), None)
    if start is None or end is None or not isinstance(start.get("questions"), int):
        return None
    scored = start["questions"] - (start.get("cached") or 0)
    return (end["time"] - start["time"]) / scored if scored >= 1 else None


def _candidates_of(run_dir: Path) -> int | None:
    """The candidates a run's teacher scored per question (its ``config.json``), to match rates by."""
    config = RunDir(run_dir).config_path
    cfg = _read_json(config) if config.is_file() else {}
    return (cfg.get("distill_passages") or cfg.get("n_passages")) if isinstance(cfg, dict) else None


def _teacher_slice_seconds(run_dir: Path, questions, file_rates: Sequence[tuple[float, int | None]] = ()) -> float | None:
    """The teacher pass over ``questions`` of a run's distillation questions, at the rate its own pass
    ran (:func:`_teacher_rate`); a run that reused another's scores takes the median rate of the same
    results file's passes over as many candidates (``file_rates``: (rate, candidates) pairs). ``None``
    where neither is known."""
    if not isinstance(questions, int) or isinstance(questions, bool):
        return None
    own = _teacher_rate(run_dir)
    if own is not None:
        return own * questions
    candidates = _candidates_of(run_dir)
    rates = sorted(rate for rate, k in file_rates if k == candidates)
    return _median(rates) * questions if rates else None


def read_pilots(pilots_file: str | Path) -> dict[tuple[str, str], dict]:
    """``scripts/repilot.py``'s ``pilots.jsonl``: (results file, row) -> its line, each checked (a bad
    line raises :class:`~attnrag.errors.InputError` naming the file, line and field). A line's re-run
    directory (its metrics, for the time estimate) is ``<the file's directory>/<pilot_run>``."""
    from ..data.formats import iter_json_objects

    path = Path(pilots_file)
    out = {}
    for number, line in iter_json_objects(path):
        if "pilot_run" not in line and isinstance(line.get("run"), str) and isinstance(line.get("row"), str):
            # lines written before repilot.py recorded it: its directory name, <experiment>-<row>
            line = {**line, "pilot_run": f"{Path(line['run']).parent.parent.name}-{line['row']}"}
        for name in ("results", "row", "pilot_run"):
            if not isinstance(line.get(name), str) or not line[name]:
                raise InputError(f"expected a non-empty string, got {line.get(name)!r}", path=path, line=number,
                                 field=name)
        pilot = line.get("pilot")
        if not isinstance(pilot, dict):
            raise InputError("expected the pilot event, an object", path=path, line=number, field="pilot")
        try:
            if _interval(pilot.get("answer_recall@1"), path, "pilot.answer_recall@1") is None:
                raise InputError("expected the pilot's interval", path=path, field="pilot.answer_recall@1")
            _number(pilot.get("seconds"), path, "pilot.seconds")
        except InputError as err:  # the same error, with the line it is on
            raise InputError(err.reason, path=path, line=number, field=err.field) from None
        out[(line["results"], line["row"])] = {**line, "run_dir": str(path.parent / line["pilot_run"])}
    return out


def with_pilots(rows: Sequence[Distillation], pilots: dict[tuple[str, str], dict],
                tied_only: bool = False) -> list[Distillation]:
    """Each row whose pilot was re-run alone (:func:`read_pilots`) judged by that pilot instead of its
    own: its interval and seconds, the full run's wall time re-costed with it (the row's wall less its
    own pilot plus the re-run's: the run it would be with today's pilot), and the re-run's estimate of
    the full loop against what the row's loop took. The outcome is the row's: a pilot restores the
    retriever, so the full run does not depend on it. ``tied_only``: only the rows whose re-run trained
    a tied tower (its ``config.json``: ``retriever_training`` "full") take it; a query tower keeps its
    own pilot, which is today's default for it (the run's batch, the index's retrieval)."""
    from dataclasses import replace

    out = []
    for d in rows:
        line = pilots.get((d.source, d.key))
        if line is not None and tied_only:
            config = RunDir(line["run_dir"]).config_path
            tied = config.is_file() and (_read_json(config) or {}).get("retriever_training") == "full"
            line = line if tied else None
        if line is None:
            out.append(d)
            continue
        pilot = line["pilot"]
        seconds = float(pilot["seconds"])
        row_seconds = (None if d.row_seconds is None or d.pilot_seconds is None
                       else d.row_seconds - d.pilot_seconds + seconds)
        questions, teacher = pilot.get("questions"), d.pilot_teacher_seconds
        if teacher is not None and d.pilot_questions and isinstance(questions, int):
            teacher = teacher / d.pilot_questions * questions  # the same rate, over the re-run's questions
        out.append(replace(d, pilot=_interval(pilot["answer_recall@1"], Path(line["run_dir"]), "pilot.answer_recall@1"),
                           pilot_seconds=seconds, row_seconds=row_seconds, pilot_teacher_seconds=teacher,
                           pilot_questions=questions if isinstance(questions, int) else d.pilot_questions,
                           time_estimate=_time_estimate(Path(d.source).parent / "runs" / d.key,
                                                        Path(line["run_dir"])),
                           pilot_rerun=True))
    return out


def read_sources(sources_file: str | Path) -> list[Distillation]:
    """Every distillation of the results files a sources file lists
    (``{"sources": [{"results", "data"[, "variant", "skip", "baselines", "timing_contended"]}]}``), in its order; a
    malformed entry raises :class:`~attnrag.errors.InputError` naming the file and the entry's field."""
    path = Path(sources_file)
    listed = _read_json(path)
    entries = listed.get("sources") if isinstance(listed, dict) else None
    if not isinstance(entries, list):
        raise InputError("expected an object whose 'sources' is a list", path=path, field="sources")
    rows: list[Distillation] = []
    for i, entry in enumerate(entries):
        where = f"sources[{i}]"
        if not isinstance(entry, dict):
            raise InputError(f"expected an object, got {type(entry).__name__}", path=path, field=where)
        for name in ("results", "data"):
            if not isinstance(entry.get(name), str) or not entry[name]:
                raise InputError(f"expected a non-empty string, got {entry.get(name)!r}", path=path,
                                 field=f"{where}.{name}")
        skip = entry.get("skip", [])
        if not isinstance(skip, list) or not all(isinstance(k, str) for k in skip):
            raise InputError(f"expected a list of row names, got {skip!r}", path=path, field=f"{where}.skip")
        contended = entry.get("timing_contended", False)
        if not (isinstance(contended, bool) or (isinstance(contended, list) and all(isinstance(k, str) for k in contended))):
            raise InputError(f"expected true, false or a list of row names, got {contended!r}", path=path,
                             field=f"{where}.timing_contended")
        rows += collect(entry["results"], entry["data"], entry.get("variant"), skip, entry.get("baselines"), contended)
    return rows


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise InputError(f"cannot read it: {err.strerror or err}", path=path) from err
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", path=path, line=err.lineno) from err


def _read_results(path: Path) -> dict:
    result = _read_json(path)
    if not isinstance(result, dict) or not isinstance(result.get("rows"), dict):
        raise InputError("expected an experiment's results.json: an object whose 'rows' is an object",
                         path=path, field="rows")
    return result


def _number(value, path: Path, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"expected a finite number, got {value!r}", path=path, field=field)
    return float(value)


def _interval(change, path: Path, field: str) -> dict | None:
    """A paired change ``{difference (or the bootstrap's delta), low, high, ...}``, checked; ``None`` if absent."""
    if not change:
        return None
    if not isinstance(change, dict):
        raise InputError(f"expected an interval object, got {type(change).__name__}", path=path, field=field)
    difference = change.get("difference", change.get("delta"))
    checked = {name: _number(change.get(name), path, f"{field}.{name}") for name in ("low", "high")}
    return {**change, **checked, "difference": _number(difference, path, f"{field}.difference")}


def _distilled(key: str, row: dict) -> bool:
    if row.get("status") != "done" or key.startswith(NOT_PREDICTED):
        return False
    if (row.get("target_stats") or {}).get("target") == "gold":
        return False
    return bool(row.get("teacher_stats") or row.get("target_stats") or row.get("train_seconds"))


def _indicators(row: dict, path: Path, field: str) -> dict | None:
    ind = row.get("indicators") or {}
    if ind.get(SHARE_KEY) is None or ind.get("answer_rho_mean") is None:
        return None
    return {name: _number(ind[name], path, f"{field}.indicators.{name}") for name in (SHARE_KEY, "answer_rho_mean")}


def _teacher_stats(stats, path: Path, field: str) -> dict | None:
    """The keys of a run's teacher check that :func:`~attnrag.analysis.diagnose.combined_verdict` reads, checked."""
    if not stats:
        return None
    if not isinstance(stats, dict):
        raise InputError(f"expected an object, got {type(stats).__name__}", path=path, field=field)
    out: dict = {}
    if stats.get("teacher_top1_gold") is not None and stats.get("retriever_top1_gold") is not None:
        out.update({name: _number(stats.get(name), path, f"{field}.{name}")
                    for name in ("teacher_top1_gold", "retriever_top1_gold", "questions")})
        if stats.get("paired"):
            out["paired"] = _interval(stats["paired"], path, f"{field}.paired")
    answers = stats.get("answer_check") or {}
    if answers.get("paired") and answers.get("informative"):
        out["answer_check"] = {
            **{name: _number(answers.get(name), path, f"{field}.answer_check.{name}")
               for name in ("teacher_top1_answer", "first_stage_top1_answer", "informative")},
            "paired": _interval(answers["paired"], path, f"{field}.answer_check.paired")}
    return out or None


def _gold_check(stats: dict | None) -> dict | None:
    """The gold-id teacher check as an interval: paired where the run logged it; an older run's rates
    get diagnose's unpaired margin 2 sqrt(r (1 - r) / n) on each side."""
    if not stats or "teacher_top1_gold" not in stats:
        return None
    if stats.get("paired"):
        return stats["paired"]
    t, r, n = stats["teacher_top1_gold"], stats["retriever_top1_gold"], stats["questions"]
    if n < 1:
        return None
    margin = 2 * math.sqrt(max(r * (1 - r), 1e-12) / n)
    return {"difference": t - r, "low": t - r - margin, "high": t - r + margin, "n": n, "unpaired": True}


def interval_verdict(change: dict | None, margin: float = 0.0) -> str | None:
    """``effective`` when the 95% interval lies above ``margin``, ``ineffective`` when it cannot exceed
    it, else ``uncertain``; ``None`` when not measured. One rule for the pilot (the retriever after
    against before) and for the teacher checks (the teacher's top-1 against the first stage's) as
    stand-alone predictors."""
    if change is None:
        return None
    if change["low"] > margin:
        return "effective"
    if change["high"] <= margin:
        return "ineffective"
    return "uncertain"


def diagnose_verdict(d: Distillation, thresholds: dict[str, float]) -> str | None:
    """What ``diagnose --pilot`` would say with these measurements: a decisive pilot decides; else the
    indicators' verdict corrected by the run's teacher check with diagnose's own rule
    (:func:`~attnrag.analysis.diagnose.combined_verdict`); ``None`` where neither the indicators (on
    dev) nor a pilot were measured (diagnose would have measured them: judging it on the teacher
    check alone would judge a different rule)."""
    if d.indicators is None and d.pilot is None:
        return None
    pilot = interval_verdict(d.pilot)
    if pilot in ("effective", "ineffective"):
        return pilot
    label = verdict(d.indicators, thresholds)[0] if d.indicators else "unknown"
    label = combined_verdict(label, "", d.teacher_stats)[0]
    return "uncertain" if label == "unknown" else label


def point_verdict(change: dict | None) -> str | None:
    """The pilot read by its point estimate alone: ``effective`` when dev answer recall@1 rose, else
    ``ineffective``; never ``uncertain``. Registered on 2026-12-07 before the rows re-run that day
    finished (docs/analysis.md): with ``uncertain`` scored as wrong, a call that always decides can
    beat the interval rule where the interval is too wide to decide, at the price of deciding on noise."""
    if change is None:
        return None
    return "effective" if change["difference"] > 0 else "ineffective"


def diagnose_point_verdict(d: Distillation, thresholds: dict[str, float]) -> str | None:
    """``diagnose`` that never abstains where it ran a pilot: a decisive pilot decides, an undecided one
    by its point estimate (:func:`point_verdict`), not by the indicators; without a pilot, diagnose's
    own rule (:func:`diagnose_verdict`). Registered on 2026-12-07 (second session, commit before the
    rows that test it: COVID-QA's seed-1 targets, the world's extra target rows, SQuAD's Step 2):
    on the 22 earlier rows the pilot's point estimate (0.86) was right more often than the indicators
    the combined verdict falls back to (0.77), and a user who ran the pilot wants a call from it."""
    if d.pilot is None:
        return diagnose_verdict(d, thresholds)
    decided = interval_verdict(d.pilot)
    return decided if decided != "uncertain" else point_verdict(d.pilot)


def predictions(d: Distillation, thresholds: dict[str, float]) -> dict[str, str | None]:
    """Every predictor's call for one distillation (``None``: not measured for it)."""
    return {"indicators": verdict(d.indicators, thresholds)[0] if d.indicators else None,
            "gold_check": interval_verdict(d.gold_check), "answer_check": interval_verdict(d.answer_check),
            "pilot": interval_verdict(d.pilot), "pilot_point": point_verdict(d.pilot),
            "diagnose": diagnose_verdict(d, thresholds), "diagnose_point": diagnose_point_verdict(d, thresholds)}


def right(label: str, outcome: bool) -> bool:
    """Issue #42's scoring: ``uncertain`` (or anything not decided) counts as wrong."""
    return (label == "effective" and outcome) or (label == "ineffective" and not outcome)


def fit_indicators(rows: Sequence[Distillation]) -> dict[str, float]:
    """The rho cut fitted on ``rows`` that have dev indicators (the thresholds module's fit)."""
    readers = [MeasuredReader(data=d.data, row=d.row, reader="", share=d.indicators[SHARE_KEY],
                              rho=d.indicators["answer_rho_mean"], gain=d.final_gain, teacher_top1=None,
                              retriever_top1=None, check_questions=None, scoring="cosine", source=d.source)
               for d in rows if d.indicators]
    return fit(readers)


def leave_one_out(rows: Sequence[Distillation], fitter: Callable[[Sequence[Distillation]], dict] = fit_indicators
                  ) -> dict:
    """Each data set held out in turn: the indicators refitted on the others, every predictor judged on
    the held-out rows it measured, against the other sets' majority outcome on the same rows."""
    per_predictor = {p: {"right": 0, "wrong": 0, "majority_right": 0, "failures": []} for p in PREDICTORS}
    folds, calls = {}, {}
    for data in sorted({d.data for d in rows}):
        train = [d for d in rows if d.data != data]
        held = [d for d in rows if d.data == data]
        thresholds = fitter(train)
        helped = sum(d.outcome for d in train)
        guess = "effective" if helped > len(train) - helped else "ineffective"
        folds[data] = {"thresholds": thresholds, "majority_guess": guess, "rows": len(held),
                       "gained": sum(d.outcome for d in held)}
        for d in held:
            calls[d.row, d.source] = predictions(d, thresholds)
            for name, label in calls[d.row, d.source].items():
                if label is None:
                    continue
                tally = per_predictor[name]
                ok = right(label, d.outcome)
                tally["right" if ok else "wrong"] += 1
                tally["majority_right"] += right(guess, d.outcome)
                if not ok:
                    tally["failures"].append(f"{d.data}: {d.row} said {label}, final gain {d.final_gain:+.3f}")
    for name, tally in per_predictor.items():
        n = tally["right"] + tally["wrong"]
        tally.update(rows=n, accuracy=tally["right"] / n if n else math.nan,
                     majority_accuracy=tally["majority_right"] / n if n else math.nan,
                     data_sets=sorted({d.data for d in rows if calls[d.row, d.source][name] is not None}))
    return {"predictors": per_predictor, "folds": folds,
            "calls": [{"data": d.data, "row": d.row, "source": d.source, **calls[d.row, d.source]} for d in rows]}


def on_pilot_rows(rows: Sequence[Distillation], calls: Sequence[dict], predictor: str = "diagnose") -> dict:
    """``predictor``'s out-of-sample calls (``leave_one_out``'s ``calls``) judged on the rows that ran a
    pilot: ``diagnose --pilot`` always runs one, so these are the rows that judge it as a user runs it."""
    judged = [(d, c) for d, c in zip(rows, calls, strict=True) if d.pilot is not None]
    hits = sum(right(c[predictor], d.outcome) for d, c in judged)
    return {"predictor": predictor, "rows": len(judged), "right": hits,
            "accuracy": hits / len(judged) if judged else math.nan,
            "data_sets": sorted({d.data for d, _ in judged})}


def table(rows: Sequence[Distillation], calls: Sequence[dict]) -> str:
    """Markdown: every distillation, each predictor's figure and call (out of sample), and the outcome."""
    def cell(change: dict | None, label: str | None) -> str:
        if change is None:
            return "–"
        mark = "" if label is None else f" {label[:3]}"
        return f"{change['difference']:+.3f} [{change['low']:+.3f}, {change['high']:+.3f}]{mark}"

    lines = ["| data | row | indicators (share / rho) | gold check, train | answer check, train | pilot, dev answer R@1 "
             "| diagnose | final | gold R@1 change, test | pilot's share of the row's time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for d, c in zip(rows, calls, strict=True):
        ind = (f"{d.indicators[SHARE_KEY]:.2f} / {d.indicators['answer_rho_mean']:.3f} {c['indicators'][:3]}"
               if d.indicators else "–")
        lines.append(f"| {d.data} | {d.row} | {ind} | {cell(d.gold_check, c['gold_check'])} | "
                     f"{cell(d.answer_check, c['answer_check'])} | {cell(d.pilot, c['pilot'])} | {c['diagnose'] or '–'} | "
                     f"{d.final} | {d.final_gain:+.3f}{' (gained)' if d.outcome else ''} | "
                     f"{'–' if d.pilot_share is None else f'{d.pilot_share:.2f}'} |")
    return "\n".join(lines)


def pilot_cost(rows: Sequence[Distillation]) -> dict:
    """The pilot's share of each full run's wall time, over the rows that ran one on a quiet machine:
    count, median, max, how many stayed within 0.10; rows whose timing was contended are counted
    apart (``contended_rows``)."""
    shares = sorted(d.pilot_share for d in rows if d.pilot_share is not None and not d.timing_contended)
    contended = sum(d.pilot_share is not None and d.timing_contended for d in rows)
    if not shares:
        return {"rows": 0, "contended_rows": contended}
    return {"rows": len(shares), "median": round(_median(shares), 4), "max": round(shares[-1], 4),
            "within_0.10": sum(s <= 0.10 for s in shares), "contended_rows": contended}


def _median(values: Sequence[float]) -> float:
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def time_estimates(rows: Sequence[Distillation], tolerance: float = 0.25) -> dict:
    """How close the in-run pilots' estimates came to the full loops they estimated (issue #42's
    target: within ``tolerance`` of the actual time): count, median and range of estimate / actual,
    how many within the tolerance, and the rows outside it; over the rows timed on a quiet machine,
    the contended ones listed apart with their ratios."""
    timed = [d for d in rows if d.time_estimate is not None and not d.timing_contended]
    contended = [f"{d.data} {d.row}: {d.time_estimate['ratio']:.2f}" for d in rows
                 if d.time_estimate is not None and d.timing_contended]
    if not timed:
        return {"rows": 0, "contended": contended}
    ratios = sorted(d.time_estimate["ratio"] for d in timed)
    median = _median(ratios)
    outside = [f"{d.data} {d.row}: {d.time_estimate['estimated_seconds']:.0f} s estimated, "
               f"{d.time_estimate['actual_seconds']:.0f} s taken" for d in timed
               if abs(d.time_estimate["ratio"] - 1) > tolerance]
    return {"rows": len(timed), "tolerance": tolerance, "median_ratio": round(median, 3),
            "min_ratio": ratios[0], "max_ratio": ratios[-1], "within": len(timed) - len(outside), "outside": outside,
            "contended": contended}


def teacher_choices(rows: Sequence[Distillation], margin: float = MARGIN) -> dict:
    """Does the pilot pick the better of two distillations? Within each results file (one data set,
    seed and first stage), every pair of rows with a pilot that started from the same retriever: the
    pilot prefers the one whose dev answer recall@1 rose more; the test prefers the one whose final
    system's gold recall@1 is higher by more than ``margin`` (else the pair is level and not scored).
    Also, per file, whether the pilot's favourite is within ``margin`` of the test's best (``top``):
    what ``diagnose --pilot``'s recommendation among targets would have got; and the pairs whose final
    systems are of one kind (both dense or both fused, ``same_final``), since a user choosing between
    a dense and a fused system also chooses the fusion, which the pilot (dense, dev) does not see."""
    groups: dict[tuple[str, str], list[Distillation]] = {}
    for d in rows:
        if d.pilot is not None and d.final_recall is not None:
            groups.setdefault((d.source, d.start), []).append(d)
    pairs = right_pairs = level = 0
    failures, top = [], {"groups": 0, "right": 0, "failures": []}
    same_final = {"pairs": 0, "right": 0}  # both finals dense, or both fused: the same kind of system
    for _, group in sorted(groups.items()):
        if len(group) < 2:
            continue
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                test = a.final_recall - b.final_recall
                if abs(round(test, 4)) <= margin:  # rounded as the rows are: 0.2233 - 0.2133 is level
                    level += 1
                    continue
                pairs += 1
                pilot = a.pilot["difference"] - b.pilot["difference"]
                same_final["pairs"] += a.final == b.final
                if (pilot > 0) == (test > 0):
                    right_pairs += 1
                    same_final["right"] += a.final == b.final
                else:
                    failures.append(f"{a.data}: {a.row} vs {b.row}: pilot {pilot:+.3f}, test {test:+.3f}")
        favourite = max(group, key=lambda d: d.pilot["difference"])
        best = max(d.final_recall for d in group)
        top["groups"] += 1
        if favourite.final_recall >= best - margin:
            top["right"] += 1
        else:
            top["failures"].append(f"{favourite.data}: pilot's favourite {favourite.row} "
                                   f"{favourite.final_recall:.3f} on test, best {best:.3f}")
    return {"pairs": pairs, "right": right_pairs, "accuracy": right_pairs / pairs if pairs else math.nan,
            "level_pairs": level, "margin": margin, "failures": failures, "top": top, "same_final": same_final}


def as_records(rows: Sequence[Distillation]) -> list[dict]:
    return [{**asdict(d), "pilot_share": d.pilot_share} for d in rows]


__all__ = ["Distillation", "PREDICTORS", "as_records", "collect", "read_pilots", "with_pilots", "diagnose_point_verdict", "diagnose_verdict", "fit_indicators",
           "interval_verdict", "leave_one_out", "point_verdict", "pilot_cost", "teacher_choices", "time_estimates", "predictions", "read_sources", "right", "table"]
