"""Atomic file output: a reader of any output path sees the old file or the new one, never half.

Everything attnrag writes (jsonl, json, indexes, checkpoints, reports) goes through these helpers:
the content is written to a temporary file in the same directory, flushed and fsynced, then
renamed over the destination (``os.replace`` is atomic on POSIX and Windows).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it to ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give outputs the permissions an ordinary open() would (0666 & ~umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        _fsync_file(tmp_path)
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` only when the block succeeds."""
    if "b" in mode:
        encoding = None
    with atomic_path(path) as tmp, open(tmp, mode, encoding=encoding) as fh:
        yield fh


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Build a directory under a temporary name, then swap it in place of ``path``.

    If ``path`` already exists it is moved aside first and removed after the swap, so a crash leaves
    either the old directory, the new one, or a ``.old`` copy next to it, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp creates 0700 directories
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old.exists():
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries a killed writer of ``path`` left behind (SIGKILL runs no cleanup)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def _load_json(path: str | Path, way_out: str = ""):
    """The JSON value of a file; a missing, unreadable, non-UTF-8 or invalid file names the file (and
    line), followed by ``way_out``."""
    from .errors import InputError

    tail = f"; {way_out}" if way_out else ""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError("file not found", path=path) from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON ({exc.msg}){tail}", path=path, line=exc.lineno) from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason} at byte {exc.start}){tail}", path=path) from exc
    except OSError as exc:
        raise InputError(f"cannot read it ({exc.strerror or exc})", path=path) from exc


def read_json_file(path: str | Path, expect: type | tuple[type, ...] = (dict, list)):
    """A JSON file an index or run directory holds; a missing, truncated, non-UTF-8 file or one of
    another shape (``expect``) names the file, the line and the way out, instead of a traceback."""
    from .errors import InputError

    way_out = "the file is damaged: rebuild or re-save the directory it belongs to"
    value = _load_json(path, way_out)
    if not isinstance(value, expect):
        names = " or ".join(t.__name__ for t in (expect if isinstance(expect, tuple) else (expect,)))
        raise InputError(f"expected a JSON {names}, got {type(value).__name__}; {way_out}", path=path)
    return value


def read_json_object(path: str | Path) -> dict:
    """A JSON options file as a dict; a missing file, bad JSON or a non-object names the file (and line)."""
    from .errors import InputError

    value = _load_json(path)
    if not isinstance(value, dict):
        raise InputError("expected a JSON object of option names and values", path=path)
    return value


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one line and fsync it (metrics logs: a crash loses at most the line being written)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


CHECKSUMS = "checksums.json"


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _own_files(directory: Path) -> list[Path]:
    """The files of ``directory``, its sub-folders' included, except the checksums file itself and
    any sub-folder that records its own (a hybrid's BM25 and dense indexes)."""
    out = []
    for entry in sorted(directory.iterdir()):
        if entry.is_dir():
            if not (entry / CHECKSUMS).is_file():
                out += _own_files(entry)
        elif entry.name != CHECKSUMS:
            out.append(entry)
    return out


def write_checksums(directory: str | Path) -> None:
    """Record the sha256 of every file a saved directory holds (``checksums.json``), so a later load
    can tell an edited or damaged file from the one written (:func:`verify_checksums`)."""
    directory = Path(directory)
    sums = {str(f.relative_to(directory)): _sha256(f) for f in _own_files(directory)}
    (directory / CHECKSUMS).write_text(json.dumps({"sha256": sums}, indent=1) + "\n", encoding="utf-8")


def verify_checksums(directory: str | Path, way_out: str) -> None:
    """Refuse, naming the file, any recorded file that is missing or whose sha256 differs from the one
    written at save time. A directory saved before checksums were recorded is not checked."""
    from .errors import InputError

    directory = Path(directory)
    if not (directory / CHECKSUMS).is_file():
        return
    recorded = read_json_file(directory / CHECKSUMS, dict).get("sha256")
    if not isinstance(recorded, dict):
        raise InputError(f"no sha256 table; {way_out}", path=directory / CHECKSUMS)
    for name, digest in recorded.items():
        path = directory / str(name)
        if ".." in Path(str(name)).parts or Path(str(name)).is_absolute():
            raise InputError(f"names a file outside the directory ({name!r}); {way_out}", path=directory / CHECKSUMS)
        if not path.is_file():
            raise InputError(f"is missing (checksums.json records it); {way_out}", path=path)
        if _sha256(path) != digest:
            raise InputError(f"differs from the file written at save time (sha256 in checksums.json): it was "
                             f"edited or damaged; {way_out}", path=path)


def _fsync_file(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
