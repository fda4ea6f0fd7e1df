"""``attnrag experiment paper``: the paper's comparison, the encoder-decoder reference and the other teachers.

Rows, all evaluated on the same test questions (EM and F1 on the first ``eval_questions``; answer
recall@1/5/10 and gold recall@1/5/10, when the data has gold passage ids, on the first
``retrieval_eval_questions``, all of them by default) and measured with the paper's indicators:

=====================  =======================================================================
``offtheshelf``        pretrained reader + pretrained retriever, no training
``offtheshelf-distill`` retriever distilled from the *un-fine-tuned* reader (``attn-norm``)
``step1``              ``finetuned-distill``: reader fine-tuned, then the retriever distilled from it
``step2``              ``finetuned-distill`` again, starting from Step 1's reader *and* retriever
                       (``TrainConfig(init_run=step1)``): it retrieves with Step 1's retriever, keeps
                       fine-tuning the reader, then distils again (attnrag's reading of the paper's
                       open "Step 2", see ``docs/method.md``)
``fid``                ``finetuned-distill`` with a Fusion-in-Decoder reader; the teacher is the
                       decoder's cross-attention (the paper's Atlas-large reference). No pretrained
                       seq2seq model ships with attnrag, so the reader is a BERT2BERT warm start from
                       the retriever's MiniLM (:func:`attnrag.reader.fid.warm_start_fid`): a weak reader,
                       reported as it is
``teacher-<name>``     one row per alternative teacher (``attn``, ``attn-logits``, ``pdist``, ``loop``,
                       ``emdr``): the retriever distilled from the *Step-1 fine-tuned reader* with that
                       teacher (setting ``offtheshelf-distill`` with ``reader=<step1>/reader``), to
                       set against Step 1, whose teacher is the default ``attn-norm``
=====================  =======================================================================

Indicators: each row's own reader reads the top-K passages its own retriever returns for the first
``min(n_test, indicator_questions)`` test questions (teacher-forced gold answer), as
:func:`attnrag.analysis.analyze.measure_run` does, and :func:`~attnrag.analysis.indicators.aggregate`
summarises them. FiD readers go through :func:`~attnrag.reader.fid.as_analysis_reader`.

Output directory::

    results.json        per row: metrics, indicators, wall seconds, or the error (rewritten after every row)
    table.md            the comparison table and how to read it
    figures/            recall_em.png (answer recall@1 and EM per row); attention_hist.png,
                        spearman_hist.png, indicators.png (the paper-style indicator histograms)
    predictions/        one jsonl per row
    runs/<row>/         the training runs (resumable)
    world/, index/      the generated world and its index, when no data directory is given

A row that fails is recorded with its error and the next row runs; re-running the command skips the
rows that finished and resumes unfinished training runs from their last checkpoint.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from ..analysis.indicators import attach_indicators
from ..data.formats import load_corpus_dir
from ..data.records import QAExample
from ..distill.teacher import TEACHERS, TeacherConfig
from ..errors import InputError
from ..io import atomic_open, atomic_path, write_json
from ..models import DEFAULT_READER, DEFAULT_RETRIEVER
from ..reader.factory import load_reader
from ..reader.fid import as_analysis_reader, warm_start_fid
from ..train.config import TrainConfig
from ..train.trainer import Trainer
from ..provenance import Provenance, machine
from ..run import RunDir

BUDGETS = ("quick", "full")


@dataclass
class PaperConfig:
    """The experiment's budget and models. ``quick`` (the defaults) is sized for under an hour on 2 CPU
    cores; ``full`` is meant for a GPU. Every field is recorded in ``results.json``.

    Attributes:
        size: synthetic world size when no data directory is given (``small`` or ``default``).
        reader, retriever: the decoder-only reader and the retriever every row starts from.
        fid_encoder: checkpoint the FiD reader is warm-started from (encoder and decoder).
        fid_reader: an existing encoder-decoder model directory to use instead of the warm start.
        fid_reader_steps, fid_reader_lr, fid_trainable_layers: reader fine-tuning of the FiD row (its
            cross-attention starts random, so it gets more steps, a higher rate and all layers).
        teachers: the alternative teachers, one row each.
        rows: the row keys to run (``None`` = every row of :func:`row_plan`); a row that needs Step 1
            (``step2``, ``teacher-*``) needs ``step1`` in the selection or already finished.
        distractors: an extra passage file added to the corpus (e.g. real Wikipedia passages), as
            :func:`attnrag.data.formats.load_corpus_dir` reads it; the index is built over both.
        n_passages: K passages the reader reads and is evaluated with; distill_passages: K candidates
            the teacher scores during distillation (``None`` = ``n_passages``).
        max_passage_tokens: per-passage token budget of the decoder-only prompt (64 fits the synthetic
            passages; 100-word Wikipedia passages need about 160).
        eval_questions: test questions whose answers are generated for EM / F1 (``None`` = all).
        retrieval_eval_questions: test questions the retrieval metrics are measured on (``None`` = all;
            retrieval costs one query encoding per question, so it can cover more than EM).
        generate_batch_size: questions generated per batch in the evaluation.
        teacher_aggregation, teacher_topk_tokens: how the attention teachers reduce a passage's token
            scores to one score (``sum``, ``mean`` or ``topk`` with k tokens; see
            :class:`~attnrag.distill.teacher.TeacherConfig`), for every attention-teacher row.
        tau_gold: temperature of the teacher distribution (``TrainConfig.tau_gold``).
        indicator_questions: cap on the questions the indicators are measured on (at most the test set).
        train_eval_questions, train_indicator_questions: dev questions for the trainer's own evaluations
            at the end of each stage (0 indicators: the experiment measures them on the test set anyway).
    """

    size: str = "default"
    reader: str = DEFAULT_READER
    retriever: str = DEFAULT_RETRIEVER
    n_passages: int = 3
    train_questions: int | None = 800
    reader_steps: int = 150
    reader_batch_size: int = 4
    reader_lr: float = 3e-4
    reader_trainable_layers: int | None = 8
    distill_questions: int | None = 150
    distill_steps: int = 120
    distill_batch_size: int = 32
    retriever_lr: float = 5e-5
    fid_encoder: str = DEFAULT_RETRIEVER
    fid_reader: str | None = None
    fid_reader_steps: int = 150
    fid_reader_lr: float = 3e-4
    fid_trainable_layers: int | None = None
    teachers: tuple[str, ...] = ("attn", "attn-logits", "pdist", "loop", "emdr")
    rows: tuple[str, ...] | None = None
    distractors: str | None = None
    distill_passages: int | None = 5
    max_passage_tokens: int = 64
    eval_questions: int | None = 100
    retrieval_eval_questions: int | None = None
    generate_batch_size: int = 16
    teacher_aggregation: str = "sum"
    teacher_topk_tokens: int = 5
    tau_gold: float = 0.01
    indicator_questions: int = 100
    indicator_signal: str = "prob"
    relatedness: str = "embedding"
    max_new_tokens: int = 12
    train_eval_questions: int = 16
    train_indicator_questions: int = 0
    save_every: int = 50
    seed: int = 0
    device: str = "auto"

    @classmethod
    def quick(cls, **overrides) -> PaperConfig:
        return cls(**overrides)

    @classmethod
    def full(cls, **overrides) -> PaperConfig:
        values = {"n_passages": 10, "distill_passages": None, "train_questions": None, "reader_steps": 1000,
                  "reader_batch_size": 8, "reader_lr": 1e-4, "reader_trainable_layers": None,
                  "distill_questions": None, "distill_steps": 1000,
                  "fid_reader_steps": 3000, "fid_reader_lr": 1e-4, "eval_questions": None,
                  "indicator_questions": 1000, "train_eval_questions": 64, "train_indicator_questions": 32,
                  "save_every": 200}
        return cls(**{**values, **overrides})

    @classmethod
    def for_budget(cls, budget: str) -> PaperConfig:
        if budget not in BUDGETS:
            raise InputError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}", field="budget")
        return cls.quick() if budget == "quick" else cls.full()

    def validate(self) -> PaperConfig:
        # types first: a string would otherwise be checked one character at a time
        for name in ("teachers", "rows"):
            value = getattr(self, name)
            if name == "rows" and value is None:
                continue
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise InputError(f"expected a list of names, got {value!r}", field=name)
        for name in self.teachers:
            if name not in TEACHERS:
                raise InputError(f"unknown teacher {name!r}; expected some of {', '.join(TEACHERS)}",
                                 field="teachers")
        if self.indicator_questions < 1:
            raise InputError(f"expected an integer >= 1, got {self.indicator_questions}",
                             field="indicator_questions")
        for name in ("eval_questions", "retrieval_eval_questions", "distill_passages"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"expected an integer >= 1 or None, got {value!r}", field=name)
        for name in ("generate_batch_size", "max_new_tokens", "n_passages"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"expected an integer >= 1, got {value!r}", field=name)
        if self.retrieval_eval_questions is not None and (
                self.eval_questions is None or self.retrieval_eval_questions < self.eval_questions):
            raise InputError("retrieval_eval_questions must cover at least the eval_questions (EM) questions, got "
                             f"{self.retrieval_eval_questions} < {self.eval_questions or 'all'}",
                             field="retrieval_eval_questions")
        try:
            TeacherConfig(aggregation=self.teacher_aggregation, topk_tokens=self.teacher_topk_tokens)
        except ValueError as exc:
            raise InputError(str(exc), field="teacher_aggregation") from exc
        if not self.tau_gold > 0:
            raise InputError(f"expected a temperature > 0, got {self.tau_gold!r}", field="tau_gold")
        if not isinstance(self.max_passage_tokens, int) or self.max_passage_tokens < 8:
            raise InputError(f"expected an integer >= 8, got {self.max_passage_tokens!r}",
                             field="max_passage_tokens")
        if self.rows is not None:
            known = [r.key for r in row_plan(self, select=False)]
            unknown = [r for r in self.rows if r not in known]
            if unknown or not self.rows:
                raise InputError(f"unknown row(s) {', '.join(unknown) or '(none given)'}; expected some of "
                                 f"{', '.join(known)}", field="rows")
        return self

    @classmethod
    def from_overrides(cls, budget: str, overrides: dict, source: str | Path | None = None) -> PaperConfig:
        """The budget's configuration with ``overrides`` (e.g. a JSON file's content) applied."""
        base = asdict(cls.for_budget(budget))
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise InputError(f"unknown experiment option(s) {', '.join(unknown)}; expected some of "
                             f"{', '.join(sorted(base))}", path=source, field=unknown[0])
        values = {**base, **overrides}
        for name in ("teachers", "rows"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)

    def prompt(self):
        from ..reader.prompt import PromptConfig

        return PromptConfig(max_passage_tokens=self.max_passage_tokens)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


@dataclass
class Row:
    key: str
    label: str
    reader: str  # "decoder" or "fid"
    teacher: str
    paper: str | None = None  # the matching setting of the paper's NQ figure


def row_plan(cfg: PaperConfig, select: bool = True) -> list[Row]:
    """The rows in the order they run (later rows need Step 1's run); ``select``: only ``cfg.rows``."""
    rows = [
        Row("offtheshelf", "Off-the-shelf checkpoint", "decoder", "-", "Off-the-shelf checkpoint"),
        Row("offtheshelf-distill", "Off-the-shelf distillation", "decoder", "attn-norm",
            "Off-the-shelf distillation"),
        Row("step1", "Fine-tuned distillation, Step 1", "decoder", "attn-norm",
            "Fine-tuned distillation, Step 1"),
        Row("step2", "Fine-tuned distillation, Step 2", "decoder", "attn-norm",
            "Fine-tuned distillation, Step 2"),
        Row("fid", "Encoder-decoder (FiD) distillation", "fid", "attn-norm (cross-attention)",
            "Atlas-large distillation"),
    ]
    rows += [Row(f"teacher-{t}", f"Step-1 reader, teacher {t}", "decoder", t) for t in cfg.teachers]
    rows += [
        Row("questions-only", "Step-1 reader, its own generated answers (no gold answers)", "decoder",
            "attn-norm (generated answers)"),
        Row("supervised", "Supervised upper bound (gold passages of the same questions, same steps)", "decoder",
            "gold passage labels"),
    ]
    if select and cfg.rows is not None:
        rows = [r for r in rows if r.key in cfg.rows]
    return rows


def run_paper_experiment(out: str | Path, data: str | Path | None = None, budget: str = "quick",
                         progress: bool = True, config: PaperConfig | None = None) -> dict:
    """Run (or resume) every row into ``out`` and return the content of ``results.json``.

    ``data``: a corpus directory (``passages.jsonl`` or one DPR ``.tsv``, and ``train``/``dev``/``test``
    jsonl in attnrag, ATLAS, NQ-open or TriviaQA form); ``None`` generates the synthetic world in
    ``out/world``. The index of the base retriever is built in ``out/index``.
    """
    from ..analysis.analyze import load_examples
    from ..analysis.indicators import PAPER_NQ

    out = Path(out)
    cfg = (config or PaperConfig.for_budget(budget)).validate()
    started = time.time()
    prov = Provenance.start()  # the command, code and machine of this call, taken before it runs
    source = prov.source
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {"rows": {}}
    # ``rows`` only selects what runs now: a later call may add rows to the same experiment
    if results.get("config") is not None:
        before, now = _without_rows(results["config"]), _without_rows(cfg.to_dict())
        changed = sorted(k for k in set(before) | set(now) if before.get(k, "<absent>") != now.get(k, "<absent>"))
        if changed:
            raise InputError(f"holds an experiment run with another configuration (differs in: {', '.join(changed)});"
                             " rerun with the same options, or choose a new output directory", path=results_path)

    data_dir, index_dir = _prepare_data(out, data, cfg, progress)
    if results.get("data") is not None and Path(results["data"]).resolve() != data_dir.resolve():
        raise InputError(f"holds an experiment on {results['data']}, not {data_dir}; choose a new output "
                         "directory", path=results_path)
    _, splits = load_corpus_dir(data_dir, cfg.distractors)
    all_test = splits.get("test")
    if not all_test:
        raise InputError("the experiment evaluates on test.jsonl, which is missing", path=data_dir)
    test = all_test[: cfg.eval_questions] if cfg.eval_questions else all_test
    retrieval_test = all_test[: cfg.retrieval_eval_questions] if cfg.retrieval_eval_questions else all_test
    if len(retrieval_test) < len(test):
        retrieval_test = test
    indicator_examples = load_examples(test, min(len(test), cfg.indicator_questions))

    base = _without_rows(PaperConfig.for_budget(budget).to_dict())
    results.update({
        "experiment": "paper", "budget": budget if _without_rows(cfg.to_dict()) == base else f"{budget}+overrides",
        "config": cfg.to_dict(), "data": str(data_dir.resolve()), "distractors": cfg.distractors, "index": str(index_dir), "n_test": len(test),
        "n_retrieval_test": len(retrieval_test),
        "n_indicator_questions": len(indicator_examples), "machine": machine(), "paper_nq": PAPER_NQ,
    })
    rows: dict = results.setdefault("rows", {})
    context = _Context(out, cfg, data_dir, index_dir, test, indicator_examples, progress, retrieval_test)
    plan = row_plan(cfg)
    every_row = row_plan(cfg, select=False)

    def shown() -> list[Row]:  # the rows of this and earlier calls, in plan order
        return [r for r in every_row if r.key in rows or r in plan]

    results["order"] = [r.key for r in shown()]
    # one record per call, written before any row runs, so a killed call still counts its time
    calls = results.setdefault("calls", [])
    call = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "selected": [r.key for r in plan], "ran": [],
            "wall_seconds": 0.0, "source": source, "machine": machine(), "provenance": prov.record()}
    calls.append(call)

    def account() -> None:
        call["wall_seconds"] = round(time.time() - started, 1)
        call["provenance"] = prov.record()
        results["total_wall_seconds"] = round(sum(c["wall_seconds"] for c in calls), 1)

    for row in plan:
        if rows.get(row.key, {}).get("status") == "done":
            continue
        t0 = time.time()
        _say(progress, f"paper: row {row.key} ...")
        try:
            record = context.run_row(row)
            record["status"] = "done"
        except Exception as exc:  # noqa: BLE001 - keep the finished rows; record the failure and go on
            record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc()[-4000:]}
        record.update({"label": row.label, "reader_kind": row.reader, "teacher": row.teacher,
                       "paper_setting": row.paper, "wall_seconds": round(time.time() - t0, 1),
                       "source": source})
        rows[row.key] = _json_safe(record)
        call["ran"].append(row.key)
        account()
        write_json(results_path, results)
        _write_table(out / "table.md", results, shown())
        _say(progress, f"paper: row {row.key} {record['status']} in {record['wall_seconds']:.0f} s")
        gc.collect()

    account()
    results["table"] = format_table(results, shown())
    write_json(results_path, results)
    _write_table(out / "table.md", results, shown())
    try:
        _write_figures(out / "figures", results, shown())
    except Exception as exc:  # noqa: BLE001 - figures are a convenience: never lose the results for them
        results["figures_error"] = f"{type(exc).__name__}: {exc}"
        write_json(results_path, results)
    return results


# ---------------------------------------------------------------------------------------------- data
def _prepare_data(out: Path, data, cfg: PaperConfig, progress: bool) -> tuple[Path, Path]:
    from ..retrieval.encoder import BiEncoder
    from ..retrieval.index import build_index

    if data is None:
        from ..data.synth import generate_world, write_world

        data_dir = out / "world"
        if not (data_dir / "test.jsonl").is_file():
            write_world(generate_world(seed=cfg.seed, size=cfg.size), data_dir)
    else:
        data_dir = Path(data)
    index_dir = out / "index"
    if not (index_dir / "index.faiss").is_file():
        passages, _ = load_corpus_dir(data_dir, cfg.distractors)
        encoder = BiEncoder.from_pretrained(cfg.retriever)
        build_index(passages, encoder, progress=progress).save(index_dir)
        del encoder
    return data_dir, index_dir


# ---------------------------------------------------------------------------------------------- rows
class _Context:
    """What every row needs: the budget, the data, the index and the evaluation questions."""

    def __init__(self, out: Path, cfg: PaperConfig, data_dir: Path, index_dir: Path, test: list[QAExample],
                 indicator_examples: list[QAExample], progress: bool,
                 retrieval_test: list[QAExample] | None = None) -> None:
        self.out, self.cfg, self.data_dir, self.index_dir = out, cfg, data_dir, index_dir
        self.test, self.indicator_examples, self.progress = test, indicator_examples, progress
        self.retrieval_test = retrieval_test or test

    @property
    def device(self) -> str | None:
        return None if self.cfg.device == "auto" else self.cfg.device

    def run_row(self, row: Row) -> dict:
        cfg = self.cfg
        t0 = time.time()
        run: Path | None = None
        if row.key == "offtheshelf":
            pass
        elif row.key == "offtheshelf-distill":
            run = self.train(row.key, "offtheshelf-distill")
        elif row.key == "step1":
            run = self.train(row.key, "finetuned-distill")
        elif row.key == "step2":
            run = self.train(row.key, "finetuned-distill", init_run=str(self.finished("step1")))
        elif row.key == "fid":
            source = cfg.fid_reader or warm_start_fid(self.out / "models" / "fid-warmstart",
                                                      encoder=cfg.fid_encoder, seed=cfg.seed)
            run = self.train(row.key, "finetuned-distill", reader=str(source),
                             reader_steps=cfg.fid_reader_steps, reader_lr=cfg.fid_reader_lr,
                             reader_trainable_layers=cfg.fid_trainable_layers)
        elif row.key.startswith("teacher-"):
            step1 = _manifest(self.finished("step1"))
            run = self.train(row.key, "offtheshelf-distill", reader=step1["reader"],
                             teacher=self.teacher(row.teacher))
        elif row.key == "questions-only":  # a query log without answers: the reader's own answers teach
            step1 = _manifest(self.finished("step1"))
            run = self.train(row.key, "offtheshelf-distill", reader=step1["reader"], teacher_answers="generated")
        elif row.key == "supervised":  # what labels buy for the same questions and steps (reader: Step 1's)
            step1 = _manifest(self.finished("step1"))
            run = self.train(row.key, "offtheshelf-distill", reader=step1["reader"], supervision="gold")
        else:  # pragma: no cover - the plan only holds the keys above
            raise ValueError(row.key)
        train_seconds = time.time() - t0
        record = self.evaluate(row.key, run)
        record["train_seconds"] = round(train_seconds, 1)
        if run is not None:
            record["run"] = str(run)
            record["teacher_stats"] = _teacher_stats(run)
        return record

    def teacher(self, name: str) -> TeacherConfig:
        return TeacherConfig(teacher=name, aggregation=self.cfg.teacher_aggregation,
                             topk_tokens=self.cfg.teacher_topk_tokens)

    def finished(self, key: str) -> Path:
        run = self.out / "runs" / key
        if not RunDir(run).finished:
            raise RuntimeError(f"this row needs the '{key}' run, which did not finish")
        return run

    def train(self, key: str, setting: str, **overrides) -> Path:
        cfg = self.cfg
        run_dir = self.out / "runs" / key
        if RunDir(run_dir).finished:
            return run_dir
        steps = max(cfg.reader_steps, cfg.distill_steps, cfg.fid_reader_steps, 1)
        options = {
            "setting": setting, "data": str(self.data_dir), "out": str(run_dir), "index": str(self.index_dir),
            "reader": cfg.reader, "retriever": cfg.retriever, "n_passages": cfg.n_passages,
            "train_questions": cfg.train_questions, "reader_steps": cfg.reader_steps,
            "reader_batch_size": cfg.reader_batch_size, "reader_lr": cfg.reader_lr,
            "reader_trainable_layers": cfg.reader_trainable_layers,
            "distill_questions": cfg.distill_questions,
            "distill_steps": cfg.distill_steps, "distill_batch_size": cfg.distill_batch_size,
            "distractors": cfg.distractors, "distill_passages": cfg.distill_passages, "prompt": cfg.prompt(),
            "retriever_lr": cfg.retriever_lr, "seed": cfg.seed, "eval_every": steps, "tau_gold": cfg.tau_gold,
            "teacher": self.teacher("attn-norm"),
            "save_every": cfg.save_every, "eval_questions": cfg.train_eval_questions,
            "indicator_questions": cfg.train_indicator_questions, "device": cfg.device,
        }
        options.update(overrides)
        resume = (run_dir / "config.json").is_file()
        trainer = Trainer(TrainConfig(**options), resume=resume, progress=self.progress)
        attach_indicators(trainer)
        trainer.run()
        return run_dir

    def system(self, run: Path | None):
        from ..evaluate.qa import load_system, run_reader_prompt

        if run is None:
            system = load_system(reader=self.cfg.reader, retriever=self.cfg.retriever, index=self.index_dir,
                                 load_reader=False, device=self.device)
            reader_source = self.cfg.reader
        else:
            system = load_system(run, load_reader=False, device=self.device)
            reader_source = _manifest(run)["reader"]
        # a fine-tuned reader directory carries its prompt; a run's base reader uses the run's prompt
        prompt = self.cfg.prompt() if run is None else run_reader_prompt(run)
        system.reader = load_reader(reader_source, prompt=prompt, device=self.device)
        return system

    def evaluate(self, key: str, run: Path | None) -> dict:
        from ..evaluate.qa import evaluate_qa

        cfg = self.cfg
        system = self.system(run)
        t0 = time.time()
        result = evaluate_qa(system, self.test, n_passages=cfg.n_passages, max_new_tokens=cfg.max_new_tokens,
                             batch_size=cfg.generate_batch_size, progress=self.progress)
        predictions = result.pop("predictions")
        result["n_em_questions"] = len(self.test)
        if len(self.retrieval_test) > len(self.test):
            # retrieval is cheap: measure it on more questions than the generation covers
            wide = evaluate_qa(system, self.retrieval_test, n_passages=cfg.n_passages, with_reader=False,
                               progress=False)
            wide.pop("predictions")
            result.update({k: v for k, v in wide.items() if k != "retrieval_seconds"})
        result["n_retrieval_questions"] = len(self.retrieval_test)
        with atomic_open(self.out / "predictions" / f"{key}.jsonl") as fh:
            for row in predictions:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        result["eval_seconds"] = round(time.time() - t0, 1)
        t0 = time.time()
        result["indicators"] = self.indicators(system)
        result["indicator_seconds"] = round(time.time() - t0, 1)
        result["reader"] = str(system.reader.name)
        del system
        return result

    def indicators(self, system) -> dict:
        """The paper's indicators of this row's reader on the passages this row's retriever returns."""
        from tqdm.auto import tqdm

        from ..analysis.analyze import gold_answer
        from ..analysis.indicators import aggregate, measure
        from ..retrieval.index import retrieve

        examples = self.indicator_examples
        system.retriever.eval()
        questions = [e.question for e in examples]
        _, passages = retrieve(system.index, system.passages, system.retriever, questions,
                               self.cfg.n_passages)
        with tqdm(total=len(examples), desc="indicators", unit="q", disable=not self.progress) as bar:
            results = measure(as_analysis_reader(system.reader), questions, passages,
                              [gold_answer(e) for e in examples], signal=self.cfg.indicator_signal,
                              relatedness=self.cfg.relatedness, progress=bar)
        return aggregate([r.stats for r in results])


def _without_rows(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "rows"}


def _manifest(run: Path) -> dict:
    return RunDir(run).manifest()


def _teacher_stats(run: Path) -> dict | None:
    """The last teacher summary the run logged (top-1 gold accuracy of the teacher, when gold ids exist)."""
    path = Path(run) / "metrics.jsonl"
    if not path.is_file():
        return None
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("event") == "teacher":
            last = {k: v for k, v in row.items() if k not in ("time", "stage", "event")}
    return last


# ---------------------------------------------------------------------------------------------- reporting
def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def format_table(results: dict, plan: list[Row] | None = None) -> str:
    """The comparison as a Markdown table (rows in plan order; failed rows show their error)."""
    from ..analysis.indicators import ATTENTION_THRESHOLD

    share_key = f"answer_attn_share_ge_{ATTENTION_THRESHOLD:g}"
    paper = results.get("paper_nq", {})
    keys = [r.key for r in plan] if plan else results.get("order", list(results["rows"]))
    header = ("| setting | reader | teacher | EM | F1 | R@1 | R@5 | R@10 | gold R@1 | gold R@5 | gold R@10 | "
              f"att>={ATTENTION_THRESHOLD:g} | rho | paper att | paper rho | teacher top-1 gold (/ retriever) | wall s |")
    lines = [header, "|" + "---|" * 17]
    for key in keys:
        r = results["rows"].get(key)
        if r is None:
            continue
        if r.get("status") != "done":
            error = str(r.get("error", "not run")).replace("|", "/").splitlines()[0][:160]
            lines.append(f"| {r['label']} | {r.get('reader_kind', '')} | {r.get('teacher', '')} | "
                         f"failed: {error} |" + " |" * 13)
            continue
        ind = r.get("indicators") or {}
        ref = paper.get(r.get("paper_setting") or "", {})
        stats = r.get("teacher_stats") or {}
        teacher_top1 = _fmt(stats.get("teacher_top1_gold"))
        if stats.get("retriever_top1_gold") is not None:
            teacher_top1 += f" / {stats['retriever_top1_gold']:.3f}"
        lines.append(
            f"| {r['label']} | {r['reader_kind']} | {r['teacher']} | {_fmt(r.get('em'))} | "
            f"{_fmt(r.get('f1'))} | {_fmt(r.get('answer_recall@1'))} | {_fmt(r.get('answer_recall@5'))} | "
            f"{_fmt(r.get('answer_recall@10'))} | {_fmt(r.get('gold_recall@1'))} | "
            f"{_fmt(r.get('gold_recall@5'))} | {_fmt(r.get('gold_recall@10'))} | "
            f"{_fmt(ind.get(share_key), 2)} | {_fmt(ind.get('answer_rho_mean'), 2)} | "
            f"{_fmt(ref.get('answer_attn_share_ge_0.057'), 2)} | {_fmt(ref.get('answer_rho_mean'), 2)} | "
            f"{teacher_top1} | {r.get('wall_seconds', 0):.0f} |")
    return "\n".join(lines)


def _write_table(path: Path, results: dict, plan: list[Row]) -> None:
    cfg = results["config"]
    total = results.get("total_wall_seconds")
    text = (
        "# attnrag: the paper's comparison\n\n"
        f"Data: `{results['data']}`"
        + (f" + distractors `{results['distractors']}`" if results.get("distractors") else "")
        + f"; EM and F1 on {results['n_test']} test questions, answer recall@k (DPR matching) and gold "
        f"recall@k (when the data has gold passage ids) on {results.get('n_retrieval_test', results['n_test'])}; "
        "indicators on the first "
        f"{results['n_indicator_questions']} of them (signal `{cfg['indicator_signal']}`, relatedness "
        f"`{cfg['relatedness']}`, 95th percentile). K = {cfg['n_passages']} passages read; "
        f"{cfg.get('distill_passages') or cfg['n_passages']} candidates scored by the teacher "
        f"(aggregation `{cfg.get('teacher_aggregation', 'sum')}`"
        + (f", top {cfg.get('teacher_topk_tokens')} tokens" if cfg.get("teacher_aggregation") == "topk" else "")
        + "). "
        f"Budget `{results['budget']}`; reader `{cfg['reader']}`, retriever `{cfg['retriever']}`.\n\n"
        f"{format_table(results, plan)}\n\n"
        "How to read it:\n\n"
        "- *Step 1* fine-tunes the reader on the base retriever's passages, then distils the retriever "
        "from it; *Step 2* starts from Step 1's reader and retriever, retrieves with Step 1's retriever, "
        "fine-tunes the reader further and distils again.\n"
        "- *FiD*: a Fusion-in-Decoder reader whose teacher is the decoder's cross-attention x value norm. "
        f"It is a BERT2BERT warm start from `{cfg['fid_encoder']}` (cross-attention newly initialised), "
        "fine-tuned "
        f"for {cfg['fid_reader_steps']} steps, not Atlas: a weak reader, reported as it is. "
        "Its 'paper' columns are Atlas-large's, for orientation only.\n"
        "- *Step-1 reader, teacher X*: the Step-1 fine-tuned reader with another teacher signal; compare "
        "with Step 1 (teacher attn-norm).\n"
        "- teacher top-1 gold: how often the passage the teacher scores highest is the gold passage, on "
        "the distillation questions (training split); after the slash, how often the retriever's own top "
        "passage is (runs since the retriever's figure was logged). In every run measured so far, a teacher "
        "clearly below the retriever pulled it down.\n"
        f"- att>=0.057: share of questions whose answer-related tokens get >= 0.057 of the passage "
        "attention; rho: mean Spearman correlation between attention and answer relatedness; paper: the "
        "authors' NQ figure.\n\n"
        + (f"Total wall time: {total:.0f} s ({len(results.get('calls', []))} call(s) of the command) on "
           f"{results['machine']}.\n" if total is not None else
           f"Machine: {results['machine']}.\n")
        + f"\nConfiguration: `{json.dumps(cfg)}`\n"
    )
    with atomic_open(path) as fh:
        fh.write(text)


def _write_figures(out_dir: Path, results: dict, plan: list[Row]) -> list[Path]:
    """``recall_em.png`` and, from the rows' indicator histograms, the paper-style indicator figures."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..analysis.report import write_figures

    rows = results["rows"]
    done = [(r, rows[r.key]) for r in plan if rows.get(r.key, {}).get("status") == "done"]
    if not done:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    series = [("answer recall@1", "answer_recall@1"), ("EM", "em")]
    if any(rec.get("gold_recall@1") is not None for _, rec in done):
        series.append(("gold recall@1", "gold_recall@1"))
    fig = Figure(figsize=(max(8.0, 1.2 * len(done)), 5.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(done))
    width = 0.8 / len(series)
    for i, (name, key) in enumerate(series):
        values = [rec.get(key) if rec.get(key) is not None else 0.0 for _, rec in done]
        bars = ax.bar(x - 0.4 + width * (i + 0.5), values, width=width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks(x, [r.label for r, _ in done], rotation=30, ha="right", fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("score")
    ax.legend()
    fig.tight_layout()
    path = out_dir / "recall_em.png"
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    paths = [path]
    aggregates = {r.label: rec["indicators"] for r, rec in done if (rec.get("indicators") or {}).get("hist")}
    if aggregates:
        paths += write_figures(aggregates, out_dir)
    return paths


def _json_safe(obj):
    from ..analysis.indicators import json_safe

    return json_safe(obj)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


__all__ = ["BUDGETS", "PaperConfig", "format_table", "row_plan", "run_paper_experiment"]
