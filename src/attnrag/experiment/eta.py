"""How long ``attnrag demo`` will take on this machine: the measured row shares, scaled by its first rows.

A demo row's wall time varies with the machine by a factor of three or more (native bf16 or not,
AVX2 or AVX-512, cores), but the *shares* of the rows in the total stay close on machines of one
precision, because every row does the same work. So the estimate takes the seconds this machine
spent on the rows it has finished and divides them by the share those rows took in a measured run
of the same precision (``demo_timings.json``, written by ``scripts/demo_timings.py`` from a demo's
``results.json``). Before any row has finished it can only quote the measured run itself.

The shares belong to one configuration (the demo preset, any precision); another configuration
(``--quick``, a changed budget field) gets no estimate rather than a wrong one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .config import PaperConfig, flat_config

TIMINGS = Path(__file__).with_name("demo_timings.json")

#: fields that change where a run's time goes, not what it computes: not compared
IGNORED_FIELDS = ("train.precision", "train.device", "rows")


@dataclass
class Measured:
    """One measured demo: its total, its rows' wall seconds, and where it ran."""

    precision: str
    total_seconds: float
    rows: dict[str, float]
    machine: str
    commit: str
    config: dict
    dirty: bool | None = None


def load_timings(path: Path = TIMINGS) -> dict[str, Measured]:
    """The measured demos by precision (``fp32``, ``bf16``); empty when none is recorded."""
    if not path.is_file():
        return {}
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {p: Measured(precision=p, **m) for p, m in raw.get("precisions", {}).items()}


def comparable(config: dict, measured: Measured) -> bool:
    """Whether ``config`` computes what the measured demo computed (same fields but the ignored)."""
    try:  # both read as PaperConfig (a measured config may be in the flat form of its day)
        mine, theirs = (flat_config(PaperConfig.from_dict(c).to_dict()) for c in (config, measured.config))
    except Exception:  # noqa: BLE001 - an unreadable measured config: no estimate rather than a wrong one
        return False
    keys = (set(mine) | set(theirs)) - set(IGNORED_FIELDS)
    return all(mine.get(k) == theirs.get(k) for k in keys)


def expected_seconds(measured: Measured, finished: dict[str, float], remaining: list[str]) -> float | None:
    """Seconds the ``remaining`` rows will take, from the seconds this machine took on ``finished``.

    ``None`` when no finished row has a measured share (nothing to scale by).
    """
    known = {k: s for k, s in finished.items() if measured.rows.get(k)}
    if not known:
        return None
    rate = sum(known.values()) / sum(measured.rows[k] for k in known)  # this machine / the measured one
    return rate * sum(measured.rows.get(k, 0.0) for k in remaining)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


class DemoClock:
    """Says before the demo what the measured run took, and after each row how long the rest will take."""

    def __init__(self, config: dict, precision: str, rows: list[str], say, timings: dict[str, Measured] | None = None):
        timings = load_timings() if timings is None else timings
        self.measured = timings.get(precision)
        if self.measured is not None and not comparable(config, self.measured):
            self.measured = None
        self.precision, self.rows, self.say = precision, list(rows), say
        self.finished: dict[str, float] = {}

    def start(self, already_done: list[str]) -> None:
        m = self.measured
        if m is None:
            return
        left = [r for r in self.rows if r not in already_done]
        share = sum(m.rows.get(r, 0.0) for r in left) / max(sum(m.rows.values()), 1e-9)
        self.say(f"demo: runs in {self.precision} here; the measured {self.precision} demo took "
                 f"{minutes(m.total_seconds)} on {m.machine} (commit {m.commit[:7]}); the rows left are "
                 f"{share:.0%} of it. An estimate for this machine follows the first row.")

    def row_done(self, key: str, seconds: float) -> float | None:
        """Record a finished row; say and return the seconds the rows after it are expected to take."""
        self.finished[key] = seconds
        if self.measured is None:
            return None
        remaining = [r for r in self.rows if r not in self.finished]
        left = expected_seconds(self.measured, self.finished, remaining)
        if left is None or not remaining:
            return left
        total = sum(self.finished.values()) + left
        self.say(f"demo: expected about {minutes(left)} more on this machine ({minutes(total)} for these rows; "
                 f"from this machine's {minutes(sum(self.finished.values()))} so far and the measured "
                 f"{self.precision} run's row shares)")
        return left


__all__ = ["DemoClock", "Measured", "comparable", "expected_seconds", "load_timings"]
