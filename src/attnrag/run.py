"""A training run directory's layout, in one place.

Every part of attnrag that reads or writes a run (the trainer, evaluation, analysis, export, the
experiments) goes through :class:`RunDir` instead of joining file names by hand, so the layout can
change in one file. It knows files, not training: what a manifest *means* is the trainer's business.

Layout::

    config.json        the TrainConfig the run was started with (``--resume`` reloads it)
    run.json           the manifest: setting, stages done, final flag, and where the reader,
                       retriever and index the run ended with live
    metrics.jsonl      one line per logged step / evaluation / event
    checkpoint.pt      the last resumable checkpoint (weights-only loadable)
    teacher_cache.pt   cached teacher scores of the distillation questions
    first_stage.json   the first stage the run retrieves with (a hybrid's weight, once chosen on dev)
    reader/            the fine-tuned reader (when the setting fine-tunes it)
    retriever/         the trained retriever (attnrag_encoder.json + towers)
    index/             a refreshed index (full retriever training); base_index/ one the run built
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

CONFIG = "config.json"
MANIFEST = "run.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
TEACHER_CACHE = "teacher_cache.pt"
FIRST_STAGE = "first_stage.json"
OWN_PARTS = ("reader", "retriever", "index", "base_index")


@dataclass(frozen=True)
class RunDir:
    """Paths and manifest of one run directory (which need not exist yet)."""

    path: Path

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    # ------------------------------------------------------------------ files
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def teacher_cache_path(self) -> Path:
        return self.path / TEACHER_CACHE

    @property
    def first_stage_path(self) -> Path:
        return self.path / FIRST_STAGE

    @property
    def reader_dir(self) -> Path:
        return self.path / "reader"

    @property
    def retriever_dir(self) -> Path:
        return self.path / "retriever"

    @property
    def index_dir(self) -> Path:
        return self.path / "index"

    @property
    def base_index_dir(self) -> Path:
        return self.path / "base_index"

    # ------------------------------------------------------------------ state
    @staticmethod
    def is_run(path: str | Path) -> bool:
        """Does ``path`` hold a run with a manifest (finished or not)?"""
        return (Path(path) / MANIFEST).is_file()

    @property
    def started(self) -> bool:
        return self.config_path.is_file()

    def share_teacher_cache(self, source: str | Path) -> bool:
        """Start this (not yet started) run with ``source``'s teacher scores, so a run that differs
        from it only in how the retriever trains does not pay the reader pass again. The trainer keeps
        the copy only if its key (reader, teacher, prompt, precision), questions and candidates are its
        own, else it scores afresh. Returns whether a cache was copied."""
        import shutil

        cache = RunDir(source).teacher_cache_path
        if not cache.is_file() or self.teacher_cache_path.exists() or self.started:
            return False
        self.path.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache, self.teacher_cache_path)
        return True

    def manifest(self) -> dict:
        """The manifest, its ``reader`` / ``retriever`` / ``index`` resolved (:meth:`resolve_part`); a
        missing or malformed one is an :class:`InputError` naming the directory."""
        from .io import read_json_object

        if not self.manifest_path.is_file():
            raise InputError("not a finished attnrag run (run.json missing); train it first", path=self.path)
        manifest = read_json_object(self.manifest_path)
        for key in ("reader", "retriever", "index"):
            if isinstance(manifest.get(key), str):
                manifest[key] = self.resolve_part(manifest[key])
        return manifest

    def resolve_part(self, value: str) -> str:
        """Where a path the manifest records lives now, so a run works after it is copied or moved and
        from any working directory. The run's own parts are stored relative to the run directory
        (``retriever``); older runs stored them relative to the directory the command started in
        (``demo-out/runs/step1/retriever``), which is read as the part of that name in this run when it
        exists here. Absolute paths (data, an index built elsewhere) and registry names pass through."""
        if Path(value).is_absolute():
            return value
        own = self.path / value
        if own.exists():
            return str(own.resolve())
        name = Path(value).name
        if name in OWN_PARTS and (self.path / name).exists():
            return str((self.path / name).resolve())
        return value

    def part_reference(self, path: str | Path) -> str:
        """How the manifest records ``path``: relative to the run when inside it, else absolute when it
        exists (a model directory, an index), else as given (a registry name)."""
        p = Path(path)
        if p.exists():
            p = p.resolve()
            try:
                return str(p.relative_to(self.path.resolve()))
            except ValueError:
                return str(p)
        return str(path)

    @property
    def finished(self) -> bool:
        return self.manifest_path.is_file() and bool(self.manifest().get("final"))

    def config(self) -> dict | None:
        """The raw ``config.json`` (``None`` when absent); :class:`TrainConfig` parses it."""
        from .io import read_json_object

        return read_json_object(self.config_path) if self.config_path.is_file() else None

    def reader(self) -> str:
        return str(self.manifest()["reader"])

    def retriever(self) -> str:
        return str(self.manifest()["retriever"])

    def index(self) -> str:
        return str(self.manifest()["index"])

    @property
    def passage_tower_changed(self) -> bool:
        return bool(self.manifest().get("passage_tower_changed"))

    def reader_prompt_fields(self) -> dict | None:
        """The prompt fields the run's reader was trained and scored with, as the trainer chose them.

        The trainer reads with the run's configured prompt, except for a run started from another run
        (``init_run``), whose reader keeps the prompt saved with it: ``None`` means the reader's own.
        """
        raw = self.config()
        if raw is None or raw.get("init_run") or not isinstance(raw.get("prompt"), dict):
            return None
        return dict(raw["prompt"])
