"""The experiments' entry points, one per command, as :mod:`attnrag.api` is for the other commands.

``attnrag demo`` is :func:`demo` and ``attnrag experiment paper`` is :func:`paper`, with the same option
names: the fields of :class:`~attnrag.experiment.config.PaperConfig` (the demo is its
:meth:`~attnrag.experiment.config.PaperConfig.demo` preset). They live here rather than in ``attnrag.api`` because an
experiment is built from the API's stages (the layering: ``api`` -> ``experiment`` -> ``cli``).

    >>> from attnrag.experiment import commands
    >>> commands.demo("demo-out", quick=True)
    >>> commands.paper("paper-out", data="../shared/data/tweetqa-open", rows=["offtheshelf", "step1"])
"""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..io import read_json_object
from ..options import merge
from .config import BUDGETS, PaperConfig, normalise
from .demo import run_demo
from .paper import run_paper_experiment


def demo(out: str | Path = "demo-out", quick: bool = False, progress: bool = True, **options) -> dict:
    """``attnrag demo``: the paper's four main rows on the embedded world; ``options`` are
    :class:`attnrag.experiment.config.PaperConfig` fields applied over the demo preset
    (:meth:`~attnrag.experiment.config.PaperConfig.demo`, ``quick`` or not)."""
    overrides = _given(options)
    config = PaperConfig.from_overrides("demo-quick" if quick else "demo", overrides)
    return run_demo(out, quick=quick, config=config, progress=progress)


def paper(out: str | Path = "paper-out", data: str | Path | None = None, budget: str = "quick",
          config: str | Path | None = None, progress: bool = True, **options) -> dict:
    """``attnrag experiment paper``: the paper's comparison; ``options`` are
    :class:`attnrag.experiment.config.PaperConfig` fields, applied over the budget and the
    ``config`` JSON file; the ``options`` given here override the file."""
    if budget not in BUDGETS:
        raise InputError(f"expected one of {', '.join(BUDGETS)}, got {budget!r}", field="--budget")
    overrides = merge(normalise(read_json_object(config), source=config) if config else {}, _given(options))
    cfg = PaperConfig.from_overrides(budget, overrides, source=config)
    if cfg.train.distractors:  # the same file from any working directory
        cfg.train.distractors = str(Path(cfg.train.distractors).resolve())
    return run_paper_experiment(out, data=data, budget=budget, config=cfg, progress=progress)


def _given(options: dict) -> dict:
    """The options given (not None), in the config's nested form: the command line's are nested
    already (``{"train": {"reader_steps": 10}}``); an API caller's may be flat (``reader_steps=10``)."""
    def given(node):
        if isinstance(node, dict):
            return {k: given(v) for k, v in node.items() if v is not None}
        return node

    return normalise(given(options))


def compare(out: str | Path, pairs: list[str], ks: tuple[int, ...] = (1,), write: str | Path | None = None,
            b_out: str | Path | None = None) -> dict:
    """``attnrag experiment compare``: a paired bootstrap of any two rows of an experiment directory
    (``pairs``: ``A:B`` specs, each row ``KEY``, ``KEY+bm25`` or ``KEY@final``; see
    :mod:`attnrag.experiment.compare`); ``b_out``: the experiment the second row of each pair comes
    from (default: ``out``); written with provenance to ``write`` when given."""
    from ..provenance import Provenance, write_result
    from .compare import compare_rows, parse_pairs

    prov = Provenance.start()
    result = compare_rows(out, parse_pairs(pairs), ks, b_out=b_out)
    if write is not None:
        write_result(write, result, prov)
    return result


def summarize(out: str | Path) -> dict:
    """``attnrag experiment summarize``: recompute an experiment directory's paired comparisons from its
    saved retrievals and rewrite its results.json and table.md (:func:`~attnrag.experiment.paper.summarize_experiment`)."""
    from .paper import summarize_experiment

    return summarize_experiment(out)


__all__ = ["compare", "demo", "paper", "summarize"]
