"""Where a result came from: the machine and the attnrag commit, recorded in every results file."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch


def machine() -> str:
    """CPU architecture, the threads torch uses, the torch build and the GPU when one is visible."""
    text = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def source_commit() -> dict | None:
    """The git commit of the attnrag source tree in use and whether its ``src/`` differs from it.

    ``None`` for an installed (non-checkout) package or without git: a result is then tied to the
    package version only. ``dirty`` counts modified and untracked files under ``src/``.
    """
    root = Path(__file__).resolve().parents[3]
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
    status = git("status", "--porcelain", "--untracked-files=all", "--", "src")
    return {"commit": commit, "dirty": bool(status)}
