"""Where a result came from, recorded by code in every results file attnrag or a script writes.

A number a reviewer cannot trace to a command, a commit and a machine cannot be checked. Every
results file therefore carries a ``provenance`` record: the command line, the attnrag commit and
whether the source differed from it, the machine, the library versions, and the start time and
wall time of the process that wrote it. Nothing here is written by hand.

Usage::

    prov = Provenance.start()          # at the start of the job
    ...
    write_result(path, result, prov)   # result + {"provenance": ...}, atomically
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

_LIBRARIES = ("attnrag", "torch", "transformers", "sentence-transformers", "faiss-cpu", "numpy", "tokenizers")


def machine() -> str:
    """CPU model and cores, the threads torch uses, the torch build and the GPU when one is visible."""
    import torch

    cpu = _cpu_model() or platform.processor() or platform.machine()
    text = (f"{cpu}, {os.cpu_count()} cores, {platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}")
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def source_commit() -> dict | None:
    """The git commit of the attnrag checkout in use, and whether the tree differs from it.

    ``dirty``: modified or untracked files under ``src/`` (the code that computed the result);
    ``tree_dirty``: any modified tracked file in the repository (docs, scripts, configs too).
    ``None`` for an installed (non-checkout) package or without git: a result is then tied to the
    package version in ``versions`` only.
    """
    root = Path(__file__).resolve().parents[2]
    if not (root / "src" / "attnrag").is_dir():
        return None

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return None
    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    src_status = git("status", "--porcelain", "--untracked-files=all", "--", "src")
    tree_status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(src_status), "tree_dirty": bool(tree_status)}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Provenance:
    """The provenance of one job; :meth:`record` adds the wall time up to the moment it is called."""

    command: str
    cwd: str
    source: dict | None
    machine: str
    versions: dict
    started_at: str
    _t0: float = field(default_factory=time.time, repr=False)

    @classmethod
    def start(cls, argv: list[str] | None = None) -> Provenance:
        argv = list(sys.argv if argv is None else argv)
        if argv and argv[0].replace("\\", "/").endswith(("/attnrag", "/attnrag.exe", "attnrag/__main__.py")):
            argv[0] = "attnrag"  # the console script or python -m attnrag
        return cls(command=shlex.join(argv), cwd=os.getcwd(), source=source_commit(), machine=machine(),
                   versions=library_versions(), started_at=_now())

    def record(self) -> dict:
        source = self.source or {}
        return {"command": self.command, "cwd": self.cwd, "commit": source.get("commit"),
                "dirty": source.get("dirty"), "tree_dirty": source.get("tree_dirty"), "machine": self.machine,
                "versions": self.versions, "started_at": self.started_at, "finished_at": _now(),
                "wall_seconds": round(time.time() - self._t0, 1)}


def with_provenance(result: dict, provenance: Provenance | None = None) -> dict:
    """``result`` plus a ``provenance`` record (a new one, timed from now, when none is given)."""
    return {**result, "provenance": (provenance or Provenance.start()).record()}


def write_result(path: str | Path, result: dict, provenance: Provenance | None = None) -> Path:
    """Write ``result`` as JSON with its provenance, atomically."""
    from .io import write_json

    write_json(path, with_provenance(result, provenance))
    return Path(path)
