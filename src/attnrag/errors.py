"""The project's own error types.

Every problem caused by user input raises :class:`InputError`, which names the file, the line and
the field at fault and what was expected, so that a user can fix the input without reading code.
The CLI prints these as one clean line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class AttnragError(Exception):
    """Base class for errors that attnrag raises on purpose."""


class InputError(AttnragError, ValueError):
    """Bad user input: a file, a line, a field and what was expected there."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        self.reason = message
        where = []
        if self.path is not None:
            where.append(self.path + (f":{line}" if line is not None else ""))
        elif line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class RunFileError(InputError):
    """A file in a run directory (``checkpoint.pt``, the teacher cache) cannot be used: truncated,
    corrupted, or holding objects whose unpickling could run code. Its message names the file and
    the way out, since ``--resume`` must neither crash with a traceback nor silently start over."""


class ModelNotFoundError(AttnragError):
    """A named model is not provisioned in the cache (or a path does not hold a model)."""


class TrainingDivergedError(AttnragError):
    """Training kept producing non-finite losses and was stopped."""
