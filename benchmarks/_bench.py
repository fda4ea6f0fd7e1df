"""Shared helpers for the benchmark groups: machine description, interleaved timing, peak RSS.

Every group measures the methods it compares side by side in one process on the same inputs:
:func:`time_interleaved` runs the methods round-robin (warm-up rounds first, then timed rounds), so
a change of machine load during the run hits every method alike, and reports every repeat plus the
median. Peak memory is measured in a fresh subprocess per (method, size) with :class:`PeakRSS`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], check=False, cwd=REPO_ROOT, capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001 - a missing optional package is simply not reported
        return None


def machine_info() -> dict:
    """What the numbers were measured on: CPU, cores, threads, library versions, commit, date, load."""
    import torch

    info = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_version": torch.__version__,
        "transformers_version": _version("transformers"),
        "sentence_transformers_version": _version("sentence-transformers"),
        "faiss_version": _version("faiss-cpu"),
        "numpy_version": _version("numpy"),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "git_commit": _git("rev-parse", "HEAD"),
        # The working tree may hold uncommitted changes; then the commit alone does not name the code.
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "nice": os.nice(0) if hasattr(os, "nice") else None,
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    try:
        import psutil

        info["physical_cores"] = psutil.cpu_count(logical=False)
        info["memory_total_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import faiss

        info["faiss_threads"] = faiss.omp_get_max_threads()
    except ImportError:
        pass
    return info


THREADS_ENV = "ATTNRAG_BENCH_THREADS"


def apply_threads(n: int | None = None) -> int | None:
    """Set torch (and faiss) threads to ``n``, or to ``$ATTNRAG_BENCH_THREADS`` when ``n`` is None.

    The variable is also exported, so worker subprocesses use the same thread count.
    """
    if n is None:
        n = int(os.environ[THREADS_ENV]) if os.environ.get(THREADS_ENV) else None
    if not n:
        return None
    os.environ[THREADS_ENV] = str(n)
    import torch

    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:
        pass
    return n


def load_average() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


# ---------------------------------------------------------------------------------------------- timing
@dataclass
class Method:
    """One contender: ``run`` is timed; ``setup``/``teardown`` (untimed) run around each call."""

    run: Callable[[], object]
    setup: Callable[[], None] | None = None
    teardown: Callable[[], None] | None = None
    last: object = field(default=None, repr=False)


def summarize(times: list[float]) -> dict:
    return {
        "repeats_s": [round(t, 6) for t in times],
        "median_s": round(statistics.median(times), 6),
        "min_s": round(min(times), 6),
        "max_s": round(max(times), 6),
    }


def _synchronize() -> None:
    """Wait for queued GPU work, so a CUDA method's time is its compute, not its launch (no-op on CPU)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_interleaved(methods: dict[str, Method], warmup: int, repeats: int) -> dict[str, dict]:
    """Time each method ``repeats`` times after ``warmup`` untimed rounds, round-robin.

    Round ``r`` runs every method once, in an order rotated by ``r`` so no method always runs
    first. Returns ``{name: {"repeats_s": [...], "median_s": ..., "cpu_repeats_s": [...], ...}}``;
    the last return value of each method is kept in ``methods[name].last``.
    """
    names = list(methods)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            m = methods[name]
            if m.setup:
                m.setup()
            gc.collect()
            c0, t0 = time.process_time(), time.perf_counter()
            try:
                m.last = m.run()
                _synchronize()
            finally:
                t1, c1 = time.perf_counter(), time.process_time()
                if m.teardown:
                    m.teardown()
            if r >= warmup:
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
    out = {}
    for name in names:
        out[name] = summarize(wall[name])
        out[name]["cpu_repeats_s"] = [round(t, 6) for t in cpu[name]]
        out[name]["cpu_median_s"] = round(statistics.median(cpu[name]), 6)
    return out


def ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, digits)


def paired_ratio_interval(numerator_s: list[float], denominator_s: list[float], level: float = 0.95,
                          n_boot: int = 10_000, seed: int = 0) -> dict:
    """Median of the per-round ratios ``numerator / denominator`` with a percentile bootstrap interval.

    The two methods ran in the same rounds (:func:`time_interleaved`), so round ``r``'s ratio cancels
    what the machine was doing during that round; resampling rounds gives the interval a single
    median ratio hides (on a shared 2-core machine single runs of the same ratio ranged 0.96-1.30).
    """
    import numpy as np

    num, den = np.asarray(numerator_s, dtype=float), np.asarray(denominator_s, dtype=float)
    if num.shape != den.shape or num.size < 2:
        raise ValueError("need the same number (>= 2) of paired rounds for both methods")
    ratios = num / den
    rng = np.random.default_rng(seed)
    boot = np.median(ratios[rng.integers(0, ratios.size, (n_boot, ratios.size))], axis=1)
    tail = (1 - level) / 2
    return {"median_ratio": round(float(np.median(ratios)), 4),
            "low": round(float(np.quantile(boot, tail)), 4), "high": round(float(np.quantile(boot, 1 - tail)), 4),
            "level": level, "rounds": int(ratios.size), "per_round": [round(float(x), 4) for x in ratios]}


# ---------------------------------------------------------------------------------------------- memory
def _status_kib(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakRSS:
    """Peak resident memory of a block, above the RSS at its start.

    On Linux the kernel's high-water mark (``VmHWM``) is reset to the current RSS by writing ``5``
    to ``/proc/self/clear_refs``, so the peak of the block is measured even when model loading
    peaked higher before it. Where that is not available it falls back to ``ru_maxrss`` (lifetime
    peak), which is only valid when the block peaks above everything before it; ``method`` says
    which one was used.
    """

    def __init__(self) -> None:
        self.baseline_kib: int | None = None
        self.peak_kib: int | None = None
        self.method = "VmHWM-reset"

    def __enter__(self) -> Self:
        gc.collect()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
        except OSError:
            self.method = "ru_maxrss"
        self.baseline_kib = _status_kib("VmRSS") if self.method == "VmHWM-reset" else _rss_kib()
        return self

    def __exit__(self, *exc) -> None:
        if self.method == "VmHWM-reset":
            self.peak_kib = _status_kib("VmHWM")
        else:
            self.peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    @property
    def above_baseline_mib(self) -> float:
        return round((self.peak_kib - self.baseline_kib) / 1024, 2)


def _rss_kib() -> int:
    try:
        import psutil

        return psutil.Process().memory_info().rss // 1024
    except ImportError:
        return _status_kib("VmRSS") or 0


def rss_mib() -> float:
    return round(_rss_kib() / 1024, 2)


def run_worker(script: Path, args: list[str], timeout: float = 1800) -> dict:
    """Run ``python script args`` in a fresh process and parse the JSON object on its last stdout line."""
    env = dict(os.environ)
    env.setdefault("TQDM_DISABLE", "1")
    env.setdefault("TRANSFORMERS_VERBOSITY", "error")
    proc = subprocess.run([sys.executable, str(script), *args], check=False, capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO_ROOT)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or "")[-2000:]
        raise RuntimeError(f"worker {script.name} {' '.join(args)} failed (rc={proc.returncode}):\n{tail}")
    return json.loads(lines[-1])


def quiet_transformers() -> None:
    """Silence the model-loading progress bars and info logs (they go to stderr and clutter output)."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    with contextlib.suppress(Exception):
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
