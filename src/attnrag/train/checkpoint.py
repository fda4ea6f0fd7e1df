"""Checkpoints: everything needed to continue a stage exactly where it stopped, written atomically.

Only the parameters that train are stored (the reader's trainable layers, the retriever's trainable
tower), with their optimizer and scheduler states and the RNG states, so a checkpoint of a 135M
reader with 12 trainable layers is ~0.5 GB instead of the ~1.6 GB a full model + AdamW dump takes.
Frozen weights are re-loaded from their source (the base model or an earlier stage's output).

Loading never runs code
-----------------------
Run directories travel (a cluster file system shared with others, a copy downloaded to resume or
analyse), and unpickling a file can call any function it names. So every run file attnrag writes
holds only tensors, numbers, strings, ``None`` and lists, tuples and dicts of them (numpy's RNG
state is stored as a tensor), and every one is read with ``torch.load(weights_only=True)``, whose
unpickler refuses every other global. Checkpoints written before this format hold numpy's RNG
state as an ``ndarray``; they load with exactly the numpy globals an array needs allowlisted
(``ndarray``, ``dtype``, ``_reconstruct``), which build arrays and nothing else. A file that names
any other global is refused with :class:`~attnrag.errors.RunFileError`, as is a truncated or
corrupted one: one line naming the file and the way out, never a traceback and never a silent
restart.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import RunFileError
from ..io import atomic_path
from ..run import CHECKPOINT, RunDir

CHECKPOINT_NAME = CHECKPOINT  # the run directory's layout lives in attnrag.run.RunDir
CHECKPOINT_KEYS = ("stage", "step", "params", "optimizer", "scheduler", "rng")
TEACHER_CACHE_KEYS = ("question_ids", "candidate_ids", "rows")

# What the uint32 ndarray in a pre-safe-format checkpoint needs (numpy 1.x pickles ``numpy.core``,
# 2.x ``numpy._core``): array and dtype constructors, nothing that can call other code.
_reconstruct = np._core.multiarray._reconstruct
_ARRAY_GLOBALS = [np.ndarray, np.dtype, type(np.dtype(np.uint32)),
                  (_reconstruct, "numpy._core.multiarray._reconstruct"),
                  (_reconstruct, "numpy.core.multiarray._reconstruct")]
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
# torch's advice around the actual reason of a weights-only failure, skipped in our one-line error
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation", "(1)", "(2)")


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    missing = [name for name in state if name not in params]
    if missing:
        raise RuntimeError(f"checkpoint has parameters the model lacks: {missing[:5]}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value.to(params[name].device))


def rng_state() -> dict:
    """Every RNG's state, as types that ``weights_only=True`` loads (numpy's key as an int64 tensor)."""
    numpy_state = np.random.get_state(legacy=False)
    key = numpy_state["state"]["key"]
    numpy_state["state"] = {"key": torch.from_numpy(key.astype(np.int64)), "pos": int(numpy_state["state"]["pos"])}
    numpy_state["has_gauss"] = int(numpy_state["has_gauss"])
    numpy_state["gauss"] = float(numpy_state["gauss"])
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state`'s output, or an older checkpoint's (numpy's legacy tuple)."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):
        key = numpy_state["state"]["key"]
        key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        numpy_state = {**numpy_state, "state": {**numpy_state["state"], "key": key.astype(np.uint32)}}
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _reason(exc: BaseException) -> str:
    """The line of an exception that says what is wrong, short enough for a one-line error."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_BOILERPLATE)]
    text = (useful or lines or [type(exc).__name__])[0].removeprefix("WeightsUnpickler error:").strip()
    text = text or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def load_run_file(path: Path, way_out: str) -> Any:
    """``torch.load(path, weights_only=True)``; any failure is a :class:`RunFileError` saying ``way_out``."""
    try:
        with torch.serialization.safe_globals(_ARRAY_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = _GLOBAL_RE.search(str(exc))
        if unsafe:
            raise RunFileError(
                f"refused: loading it would call {unsafe.group(1)}, which attnrag's files never hold "
                f"(unpickling can run code; do not trust a run directory from elsewhere); {way_out}",
                path=path) from exc
        raise RunFileError(f"truncated or corrupted ({_reason(exc)}); {way_out}", path=path) from exc
    except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        raise RunFileError(f"cannot be read ({_reason(exc)})", path=path) from exc
    except Exception as exc:  # noqa: BLE001 - a damaged file can fail anywhere inside the unpickler
        raise RunFileError(f"truncated or corrupted ({_reason(exc)}); {way_out}", path=path) from exc


def _require_keys(obj: Any, keys: tuple[str, ...], path: Path, what: str, way_out: str) -> None:
    missing = [k for k in keys if k not in obj] if isinstance(obj, dict) else list(keys)
    if missing:
        raise RunFileError(f"not an attnrag {what} (missing {', '.join(missing)}); {way_out}", path=path)


def save_checkpoint(run_dir: Path, state: dict) -> Path:
    """Write ``checkpoint.pt`` atomically (temporary file, fsync, rename)."""
    path = RunDir(run_dir).checkpoint_path
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(run_dir: Path) -> dict | None:
    """The run's checkpoint, ``None`` when it has none; a damaged or unsafe one is refused."""
    path = RunDir(run_dir).checkpoint_path
    if not path.is_file():
        return None
    way_out = (f"start the run again with a new --out (or, if you kept an earlier good copy of "
               f"{CHECKPOINT_NAME}, put it back and --resume)")
    state = load_run_file(path, way_out)
    _require_keys(state, CHECKPOINT_KEYS, path, "checkpoint", way_out)
    return state


def save_teacher_cache(path: Path, cache: dict) -> None:
    """Write the teacher cache atomically. Its values must be tensors, strings, numbers and lists of
    them, which is what lets :func:`load_teacher_cache` read it with ``weights_only=True``."""
    with atomic_path(path) as tmp:
        torch.save(cache, tmp)


def load_teacher_cache(path: Path) -> dict | None:
    """The saved teacher scores, ``None`` when there are none; a damaged or unsafe cache is refused."""
    path = Path(path)
    if not path.is_file():
        return None
    way_out = "delete it and --resume: the teacher scores are computed again"
    cache = load_run_file(path, way_out)
    _require_keys(cache, TEACHER_CACHE_KEYS, path, "teacher cache", way_out)
    rows, n = cache["rows"], len(cache["question_ids"])
    if (len(cache["candidate_ids"]) != n or len(rows) > n
            or not all(isinstance(r, torch.Tensor) for r in rows)):
        raise RunFileError(f"inconsistent teacher cache ({len(rows)} score rows, {n} questions); {way_out}",
                           path=path)
    return cache
