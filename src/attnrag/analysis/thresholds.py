"""How good is ``diagnose``'s verdict? Every measured reader in one table, the thresholds fitted on it,
and their accuracy out of sample (leave one data set out).

A *measured reader* is one distillation whose teacher's indicators and outcome were both recorded:
a row of a paper-grid ``results.json`` (``attnrag experiment paper``) that trained a retriever from a
reader's attention. Its indicators are those the experiment measured for that row's reader; its
outcome is the change in test gold recall@1 against the retriever it started from (the zero-shot one
for off-the-shelf distillation and Step 1, Step 1's for Step 2). The verdict judged is the one
``diagnose`` gives: :func:`~attnrag.analysis.diagnose.verdict` from share and rho, corrected by the
teacher check (:func:`~attnrag.analysis.diagnose.combined_verdict`) where the run logged the teacher's
and the retriever's top-1 gold accuracy.

Scoring: ``effective`` is right when distillation gained more than ``margin`` (0.01 gold recall@1),
``ineffective`` when it did not; ``uncertain`` abstains (reported as coverage, not as an error).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from .diagnose import SHARE_KEY, combined_verdict, verdict

MARGIN = 0.01

#: the rule before any refit (set by hand from the first eight readers): the fit starts from it and,
#: among equally good thresholds, keeps the ones closest to it; the share bounds are the paper's
PRIOR: dict[str, float] = {"effective_share": 0.25, "effective_rho": 0.09, "ineffective_share": 0.10,
                           "ineffective_rho": 0.055}

#: which row each distillation row started from (its outcome is measured against that row)
BASELINE_ROW = {"offtheshelf-distill": "offtheshelf", "step1": "offtheshelf", "step2": "step1", "fid": "offtheshelf",
                "questions-only": "offtheshelf"}


@dataclass(frozen=True)
class MeasuredReader:
    """One distillation: its teacher's indicators and teacher check, and what it did to the retriever."""

    data: str
    row: str
    reader: str
    share: float
    rho: float
    gain: float
    teacher_top1: float | None
    retriever_top1: float | None
    check_questions: int | None
    scoring: str
    source: str

    @property
    def indicators(self) -> dict:
        return {SHARE_KEY: self.share, "answer_rho_mean": self.rho}

    @property
    def check(self) -> dict | None:
        if self.teacher_top1 is None or self.retriever_top1 is None or not self.check_questions:
            return None
        return {"teacher_top1_gold": self.teacher_top1, "retriever_top1_gold": self.retriever_top1,
                "questions": self.check_questions}


def collect(results_file: str | Path, data: str, scoring: str = "cosine", variant: str | None = None
            ) -> list[MeasuredReader]:
    """The measured readers of one paper-grid ``results.json`` (rows that distilled and have indicators);
    ``variant`` tells apart two experiments on the same data (it is appended to the row name)."""
    path = Path(results_file)
    rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    out = []
    for key, base in BASELINE_ROW.items():
        row, start = rows.get(key), rows.get(base)
        if not row or not start or row.get("status") != "done" or "indicators" not in row:
            continue
        ind = row["indicators"]
        stats = row.get("teacher_stats") or {}
        share, rho = ind.get(SHARE_KEY), ind.get("answer_rho_mean")
        if share is None or rho is None or row.get("gold_recall@1") is None or start.get("gold_recall@1") is None:
            continue
        out.append(MeasuredReader(
            data=data, row=f"{key} ({variant})" if variant else key, reader=str(row.get("reader", "")), share=float(share), rho=float(rho),
            gain=round(float(row["gold_recall@1"]) - float(start["gold_recall@1"]), 4),
            teacher_top1=stats.get("teacher_top1_gold"), retriever_top1=stats.get("retriever_top1_gold"),
            check_questions=stats.get("questions"), scoring=scoring, source=str(path)))
    return out


def predicted(reader: MeasuredReader, thresholds: dict[str, float] | None = None) -> str:
    """The label ``diagnose`` would give this reader under ``thresholds``."""
    label, message = verdict(reader.indicators, thresholds)
    return combined_verdict(label, message, reader.check)[0]


def is_correct(label: str, gain: float, margin: float = MARGIN) -> bool | None:
    """``effective`` is right when the gain exceeds ``margin``, ``ineffective`` when it does not;
    ``None`` for an abstention (``uncertain``, ``unknown``)."""
    if label == "effective":
        return gain > margin
    if label == "ineffective":
        return gain <= margin
    return None


def score(readers: Sequence[MeasuredReader], thresholds: dict[str, float] | None = None,
          margin: float = MARGIN) -> dict:
    """``correct``, ``wrong``, ``abstained``, ``accuracy`` (over decided readers) and ``coverage``."""
    return _pool([is_correct(predicted(r, thresholds), r.gain, margin) for r in readers])


def fit(readers: Sequence[MeasuredReader], margin: float = MARGIN) -> dict[str, float]:
    """The rho thresholds that maximise ``correct - wrong`` on ``readers`` (abstaining costs nothing).

    Candidates are the midpoints between neighbouring measured rho values (and the :data:`PRIOR`
    ones); the share bounds stay the paper's, because every decoder-only reader measured here has a
    share far above them. Ties go to the widest ``uncertain`` band, then to the thresholds closest to
    the prior, so that a fit on few readers moves the rule as little as it can. The result does not
    depend on the thresholds ``diagnose`` currently ships.
    """
    rhos = sorted({round(r.rho, 4) for r in readers})
    cuts = sorted({PRIOR["ineffective_rho"], PRIOR["effective_rho"]}
                  | {round((a + b) / 2, 4) for a, b in itertools.pairwise(rhos)}
                  | ({rhos[0] - 0.01, rhos[-1] + 0.01} if rhos else set()))
    best, best_key = dict(PRIOR), None
    for low, high in itertools.combinations_with_replacement(cuts, 2):
        candidate = {**PRIOR, "ineffective_rho": low, "effective_rho": high}
        s = score(readers, candidate, margin)
        drift = abs(low - PRIOR["ineffective_rho"]) + abs(high - PRIOR["effective_rho"])
        key = (s["correct"] - s["wrong"], high - low, -drift)
        if best_key is None or key > best_key:
            best, best_key = candidate, key
    return {k: round(v, 4) for k, v in best.items()}


def leave_one_out(readers: Sequence[MeasuredReader], by: str = "data", margin: float = MARGIN) -> dict:
    """Fit on every group but one (``by``: ``data`` or ``reader``), judge the held-out group's readers.

    Returns the pooled out-of-sample ``score`` and, per held-out group, its thresholds and score.
    """
    groups = sorted({getattr(r, by) for r in readers})
    held_marks, majority_marks, folds = [], [], {}
    for group in groups:
        train = [r for r in readers if getattr(r, by) != group]
        test = [r for r in readers if getattr(r, by) == group]
        thresholds = fit(train, margin)
        marks = [is_correct(predicted(r, thresholds), r.gain, margin) for r in test]
        held_marks += marks
        # the baseline any rule must beat: always say what was most often true on the other groups
        helped = sum(r.gain > margin for r in train)
        guess = "effective" if helped > len(train) - helped else "ineffective"
        majority_marks += [is_correct(guess, r.gain, margin) for r in test]
        folds[group] = {"thresholds": thresholds, "majority_guess": guess, **score(test, thresholds, margin)}
    return {"by": by, "pooled": _pool(held_marks), "majority_baseline": _pool(majority_marks), "folds": folds}


def _pool(marks: Sequence[bool | None]) -> dict:
    decided = [m for m in marks if m is not None]
    return {"correct": sum(decided), "wrong": len(decided) - sum(decided), "abstained": len(marks) - len(decided),
            "accuracy": sum(decided) / len(decided) if decided else math.nan,
            "coverage": len(decided) / len(marks) if marks else math.nan}


def table(readers: Sequence[MeasuredReader], thresholds: dict[str, float] | None = None) -> str:
    """Markdown: every measured reader, its indicators, teacher check, verdict and outcome."""
    lines = ["| data | row | scoring | share | rho | teacher / retriever top-1 | verdict | gold R@1 change | right? |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in readers:
        label = predicted(r, thresholds)
        mark = is_correct(label, r.gain)
        check = f"{r.teacher_top1:.3f} / {r.retriever_top1:.3f}" if r.check else "–"
        lines.append(f"| {r.data} | {r.row} | {r.scoring} | {r.share:.2f} | {r.rho:.3f} | {check} | {label} | {r.gain:+.3f} | "
                     f"{'–' if mark is None else ('yes' if mark else '**no**')} |")
    return "\n".join(lines)


def as_records(readers: Sequence[MeasuredReader]) -> list[dict]:
    return [asdict(r) for r in readers]


def from_records(records: Sequence[dict]) -> list[MeasuredReader]:
    return [MeasuredReader(**r) for r in records]


__all__ = ["BASELINE_ROW", "MARGIN", "PRIOR", "MeasuredReader", "collect", "fit", "from_records", "is_correct",
           "leave_one_out", "predicted", "score", "table"]
