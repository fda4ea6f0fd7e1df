"""``attnrag experiment paper``: the paper's comparison, the encoder-decoder reference and the other teachers.

Rows, all evaluated on the same test questions (EM and F1 on the first ``em_questions``; answer
recall@1/5/10 and gold recall@1/5/10, when the data has gold passage ids, on the first
``retrieval_questions``, all of them by default) and measured with the paper's indicators:

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
``questions-only``     the Step-1 reader teaches with its own generated answers (a query log)
``supervised``         the supervised upper bound: contrastive loss on the gold passages of the
                       same questions, same steps (reader: Step 1's, for the evaluation)
``<row>-full``         ``offtheshelf-distill``, ``step1``, ``questions-only`` and ``supervised`` again,
                       with one tied retriever tower trained on both sides
                       (``retriever_training="full"``; the corpus is re-encoded). Readers as in the
                       named row (``step1-full`` distils from Step 1's reader, not trained again);
                       teacher scores are taken from the named row's run when it finished
=====================  =======================================================================

Indicators: each row's own reader reads the top-K passages its own retriever returns for the first
``min(n_dev, indicator_questions)`` dev questions (teacher-forced gold answer; never test questions:
the indicators predict the test outcome, so they must not see it; none without a dev split), as
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
from dataclasses import fields, replace
from pathlib import Path

from ..analysis.indicators import attach_indicators
from ..data.formats import load_corpus_dir
from ..data.records import QAExample
from ..errors import InputError
from ..io import atomic_open, write_json
from ..reader.factory import load_reader, reader_kind
from ..reader.fid import as_analysis_reader, warm_start_fid
from ..train.trainer import Trainer
from ..provenance import Provenance, machine
from ..run import RunDir
from .config import RETRIEVAL_SUFFIX, PaperConfig, Row, flat_config, normalise, row_plan
from ..retrieval.hybrid import DEFAULT_DEPTH
from .report import format_table, json_safe_results, write_paper_figures, write_table

def run_paper_experiment(out: str | Path, data: str | Path | None = None, budget: str = "quick",
                         progress: bool = True, config: PaperConfig | None = None, clock=None) -> dict:
    """Run (or resume) every row into ``out`` and return the content of ``results.json``.

    ``data``: a corpus directory (``passages.jsonl`` or one DPR ``.tsv``, and ``train``/``dev``/``test``
    jsonl in attnrag, ATLAS, NQ-open or TriviaQA form); ``None`` generates the synthetic world in
    ``out/world``. The index of the base retriever is built in ``out/index``. ``clock``: told when the
    rows start (``clock.start(rows already done)``) and as each ends (``clock.row_done(key, seconds)``);
    the demo's :class:`~attnrag.experiment.eta.DemoClock` says the expected wall time with it.
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
        # an option added since the directory was written reads as its default, which keeps the old
        # behaviour; a directory written before the grid composed TrainConfig is read in its flat form
        before = _without_rows(flat_config(PaperConfig.from_dict(results["config"], source=results_path).to_dict()))
        now = _without_rows(flat_config(cfg.to_dict()))
        changed = sorted(k for k in set(before) | set(now) if before.get(k, "<absent>") != now.get(k, "<absent>"))
        if changed:
            raise InputError(f"holds an experiment run with another configuration (differs in: {', '.join(changed)});"
                             " rerun with the same options, or choose a new output directory", path=results_path)

    data_dir, index_dir = _prepare_data(out, data, cfg, progress)
    if results.get("data") is not None and Path(results["data"]).resolve() != data_dir.resolve():
        raise InputError(f"holds an experiment on {results['data']}, not {data_dir}; choose a new output "
                         "directory", path=results_path)
    _, splits = load_corpus_dir(data_dir, cfg.train.distractors)
    all_test = splits.get("test")
    if not all_test:
        raise InputError("the experiment evaluates on test.jsonl, which is missing", path=data_dir)
    test = all_test[: cfg.em_questions] if cfg.em_questions else all_test
    retrieval_test = all_test[: cfg.retrieval_questions] if cfg.retrieval_questions else all_test
    if len(retrieval_test) < len(test):
        retrieval_test = test
    # the indicators are a predictor: measured on dev questions, never on the test questions they predict
    dev_split = splits.get("dev") or []
    indicator_examples = (load_examples(dev_split, min(len(dev_split), cfg.row_indicator_questions))
                          if cfg.row_indicator_questions and dev_split else [])

    base = _without_rows(PaperConfig.for_budget(budget).to_dict())
    results.update({
        "experiment": "paper", "budget": budget if _without_rows(cfg.to_dict()) == base else f"{budget}+overrides",
        "config": cfg.to_dict(), "data": str(data_dir.resolve()), "distractors": cfg.train.distractors, "index": str(index_dir), "n_test": len(test),
        "n_retrieval_test": len(retrieval_test),
        "n_indicator_questions": len(indicator_examples), "indicator_split": "dev" if indicator_examples else None,
        "machine": machine(), "paper_nq": PAPER_NQ,
    })
    rows: dict = results.setdefault("rows", {})
    context = _Context(out, cfg, data_dir, index_dir, test, indicator_examples, progress, retrieval_test)
    context.dev = splits.get("dev") or []  # where the hybrid's weight is chosen (never on test)
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
        call["provenance"] = results["provenance"] = prov.record()  # the latest call's, at the top too
        results["total_wall_seconds"] = round(sum(c["wall_seconds"] for c in calls), 1)

    if clock is not None:
        clock.start([r.key for r in plan if rows.get(r.key, {}).get("status") == "done"])
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
        rows[row.key] = json_safe_results(record)
        call["ran"].append(row.key)
        account()
        write_json(results_path, results)
        write_table(out / "table.md", results, shown())
        _say(progress, f"paper: row {row.key} {record['status']} in {record['wall_seconds']:.0f} s")
        if clock is not None and record["status"] == "done":
            clock.row_done(row.key, record["wall_seconds"])
        gc.collect()

    account()
    add_comparisons(out, results, context.retrieval_test)
    results["table"] = format_table(results, shown())
    write_json(results_path, results)
    write_table(out / "table.md", results, shown())
    try:
        write_paper_figures(out / "figures", results, shown())
    except Exception as exc:  # noqa: BLE001 - figures are a convenience: never lose the results for them
        results["figures_error"] = f"{type(exc).__name__}: {exc}"
        write_json(results_path, results)
    return results


def add_comparisons(out: Path, results: dict, retrieval_test: list[QAExample]) -> None:
    """The paired comparisons drawn from the rows' saved retrievals, into ``results``: every row's
    final retriever against the best first stage (:func:`first_stage_intervals`) and the target x loss
    grid (:func:`attnrag.experiment.grid.target_grid`). A summary never loses the rows: its error is
    recorded instead."""
    from .grid import target_grid

    intervals = first_stage_intervals(out, results, retrieval_test)
    if intervals is not None:
        results["first_stage_intervals"] = intervals
    try:
        grid = target_grid(out, results)
        if grid is not None:
            results["target_grid"] = grid
    except Exception as exc:  # noqa: BLE001 - a summary: never lose the rows for it
        results["target_grid_error"] = f"{type(exc).__name__}: {exc}"


def summarize_experiment(out: str | Path) -> dict:
    """Recompute the comparisons of a finished (or stopped) experiment directory from its saved
    retrievals, with no model and no row run again, and rewrite ``results.json`` and ``table.md``
    (each summary's provenance is appended to ``summaries``). For directories whose rows ran before
    the comparisons existed, or whose run was stopped before its end."""
    out = Path(out)
    results_path = out / "results.json"
    if not results_path.is_file():
        raise InputError("not an experiment directory (no results.json)", path=out)
    prov = Provenance.start()
    results = json.loads(results_path.read_text(encoding="utf-8"))
    _, splits = load_corpus_dir(results["data"], results.get("distractors"))
    retrieval_test = splits["test"][: results.get("n_retrieval_test")]
    add_comparisons(out, results, retrieval_test)
    keys = set(results.get("order", results["rows"]))
    known = {f.name for f in fields(PaperConfig)} - {"rows"}  # the row names are read from the results
    raw = normalise(results.get("config") or {}, source=results_path)
    config = PaperConfig.from_dict({k: v for k, v in raw.items() if k in known}, source=results_path)
    plan = [r for r in row_plan(config, select=False) if r.key in keys]
    results["table"] = format_table(results, plan)
    results.setdefault("summaries", []).append(prov.record())
    write_json(results_path, results)
    write_table(out / "table.md", results, plan)
    return results


# ---------------------------------------------------------------------------------------------- data
def _prepare_data(out: Path, data, cfg: PaperConfig, progress: bool) -> tuple[Path, Path]:
    from ..retrieval.encoder import BiEncoder
    from ..retrieval.index import build_index

    if data is None:
        from ..data.synth import generate_world, write_world

        data_dir = out / "world"
        if not (data_dir / "test.jsonl").is_file():
            write_world(generate_world(seed=cfg.world_seed, size=cfg.size), data_dir)
    else:
        data_dir = Path(data)
    index_dir = out / "index"
    if not (index_dir / "index.faiss").is_file():
        passages, _ = load_corpus_dir(data_dir, cfg.train.distractors)
        encoder = BiEncoder.from_pretrained(cfg.train.retriever)
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
        # the answers each reader gave, per (question, passages read): rows that share a reader and
        # retrieve the same top K for a question (a retriever and its hybrid, a run and its zero-shot
        # row) do not generate them again (see evaluate_qa's known_answers)
        self.answers: dict[str, dict] = {}
        self.hybrids: dict[str, tuple[object, dict]] = {}  # the dev-tuned hybrid of each dense retriever

    @property
    def train_seed(self) -> int:
        return self.cfg.train.seed

    @property
    def device(self) -> str | None:
        return None if self.cfg.train.device == "auto" else self.cfg.train.device

    def run_row(self, row: Row) -> dict:
        """Train the row as its data says (or not, for an untrained row) and evaluate it."""
        reader = _manifest(self.finished(row.reader_from))["reader"] if row.reader_from else None
        if row.setting is None:  # evaluated as it stands: the zero-shot retriever (or BM25, the hybrid)
            return self.evaluate(row.key, None, reader=reader, first_stage=row.first_stage)
        t0 = time.time()
        changes = dict(row.changes)
        if reader is not None:
            changes["reader"] = reader
        if row.init_from:
            changes["init_run"] = str(self.finished(row.init_from))
        if row.fid_warm_start:
            changes["reader"] = str(self.cfg.fid_reader or warm_start_fid(
                self.out / "models" / "fid-warmstart", encoder=self.cfg.fid_encoder, seed=self.train_seed))
        run_dir = self.out / "runs" / row.key
        source = self.teacher_source(row)
        if source is not None:  # the same reader, teacher and candidates: one teacher pass
            RunDir(run_dir).share_teacher_cache(source)
        run = self.train(row.key, row.setting, **changes)
        train_seconds = time.time() - t0
        record = self.evaluate(row.key, run)
        record["train_seconds"] = round(train_seconds, 1)
        record["first_stage"] = _manifest(run).get("first_stage", {"first_stage": "dense"})
        record["run"] = str(run)
        record["teacher_stats"] = _teacher_stats(run)
        record["target_stats"] = _last_event(run, "targets")
        record["teacher_stats_dev"] = _last_event(run, "teacher_dev")  # held out: no memorisation
        record["pilot"] = _last_event(run, "pilot")  # the run's own pilot: a prediction made on train / dev
        return record

    def teacher_source(self, row: Row) -> Path | None:
        """A finished row whose teacher pass ``row`` can reuse (:attr:`Row.teacher_pass`: the same
        reader, teacher and first stage; the loss, the target built from the scores and the tower do
        not change the scores). The trainer keeps the copy only if its key (reader, teacher, prompt,
        precision), questions and candidates are its own."""
        wanted = row.teacher_pass
        if wanted is None or RunDir(self.out / "runs" / row.key).started:
            return None
        for other in row_plan(self.cfg, select=False):
            source = self.out / "runs" / other.key
            if (other.key != row.key and other.teacher_pass == wanted and RunDir(source).finished
                    and RunDir(source).teacher_cache_path.is_file()):
                return source
        return None

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
        # the grid's training with what the row changes (paths, setting, seed, teacher, target, loss, ...)
        options = {"setting": setting, "data": str(self.data_dir), "out": str(run_dir), "index": str(self.index_dir),
                   "seed": self.train_seed}
        options.update(overrides)
        resume = RunDir(run_dir).started
        trainer = Trainer(replace(cfg.train, **options), resume=resume, progress=self.progress)
        attach_indicators(trainer)
        trainer.run()
        return run_dir

    def system(self, run: Path | None, reader: str | None = None):
        """The row's reader, retriever and index: a run's, or (``run=None``) the zero-shot retriever with
        ``reader`` (default: the base reader)."""
        from ..evaluate.qa import load_system, run_reader_prompt

        if run is None:
            reader_source = reader or self.cfg.train.reader
            system = load_system(reader=reader_source, retriever=self.cfg.train.retriever, index=self.index_dir,
                                 load_reader=False, device=self.device)
        else:
            system = load_system(run, load_reader=False, device=self.device)
            reader_source = _manifest(run)["reader"]
        # a fine-tuned reader directory carries its prompt; a run's base reader uses the run's prompt
        prompt = (self.cfg.train.prompt if reader is None else None) if run is None else run_reader_prompt(run)
        fid = reader_kind(reader_source) == "fid"  # FiD runs fp32 (its capture is checked in fp32)
        precision = "fp32" if fid and self.cfg.train.precision == "bf16" else self.cfg.train.precision
        system.reader = load_reader(reader_source, prompt=prompt, device=self.device, precision=precision)
        return system

    def known_answers(self, system) -> dict:
        """The answer memo of ``system``'s reader: its weights (the model directory, never rewritten
        within an experiment), prompt, precision and answer length decide its answers."""
        from dataclasses import asdict

        reader = system.reader
        source = Path(str(reader.name))
        identity = json.dumps({"reader": str(source.resolve()) if source.exists() else str(reader.name),
                               "prompt": asdict(reader.prompt), "precision": getattr(reader, "precision", None),
                               "max_new_tokens": self.cfg.max_new_tokens}, sort_keys=True, default=str)
        return self.answers.setdefault(identity, {})

    def lexical(self):
        """BM25 over the experiment's passages (distractors included), built once."""
        if getattr(self, "_lexical", None) is None:
            from ..retrieval.lexical import BM25Index

            passages, _ = load_corpus_dir(self.data_dir, self.cfg.train.distractors)
            self._lexical = BM25Index.build(passages)
        return self._lexical

    def hybrid_of(self, system, run: Path | None) -> tuple[object, dict]:
        """The convex BM25 + dense hybrid of ``system``'s dense retriever, its weight chosen on dev
        recall@1 (the tuning curve says what dev measured for BM25 alone, weight 1, and for the dense
        retriever alone, weight 0)."""
        from ..evaluate.retrieval import tune_hybrid_weight
        from ..retrieval.hybrid import HybridIndex

        if not getattr(self, "dev", None):
            raise InputError("the hybrid's weight is chosen on dev.jsonl, which is missing", path=self.data_dir)
        # the rows with the zero-shot retriever (``run`` None) tune its hybrid once
        identity = str(run) if run is not None else f"zero-shot {self.cfg.train.retriever}"
        if identity not in self.hybrids:
            system.retriever.eval()
            tuned = tune_hybrid_weight(self.lexical(), system.index, system.retriever, self.dev, depth=HYBRID_DEPTH)
            table = tuned["table"]
            dev = {"weight": tuned["weight"], "metric": tuned["metric"], "n": tuned["n"], "depth": tuned["depth"],
                   "bm25": table["1.0"], "dense": table["0.0"], "hybrid": table[str(tuned["weight"])], "curve": table}
            self.hybrids[identity] = (tuned["weight"], dev)
        weight, dev = self.hybrids[identity]
        return HybridIndex(self.lexical(), system.index, "convex", weight, HYBRID_DEPTH), dev

    def evaluate(self, key: str, run: Path | None, reader: str | None = None, first_stage: str = "dense") -> dict:
        """EM / F1, retrieval metrics and indicators of one row; ``first_stage`` bm25 or hybrid puts that
        first stage in front of the row's reader. Every row with a dense retriever is also measured as
        the dev-tuned hybrid of that retriever with BM25 (``with_bm25``): what a user who has BM25
        would deploy."""
        from dataclasses import replace

        system = self.system(run, reader)
        dev = None
        if first_stage == "bm25":
            system = replace(system, index=self.lexical())
        elif first_stage == "hybrid":
            index, dev = self.hybrid_of(system, run)
            system = replace(system, index=index)
        answers = self.known_answers(system)
        result = self.measure(key, system, answers)
        if dev is not None:
            result["dev_recall@1"] = dev
        if self.indicator_examples:  # a budget may leave the indicators to ``attnrag analyze`` (the demo's)
            t0 = time.time()
            result["indicators"] = self.indicators(system)
            result["indicator_seconds"] = round(time.time() - t0, 1)
        if first_stage == "dense" and self.cfg.with_bm25 and getattr(self, "dev", None):
            t0 = time.time()
            index, dev = self.hybrid_of(system, run)
            hybrid = self.measure(f"{key}+bm25", replace(system, index=index), answers)
            result["with_bm25"] = {"dev_recall@1": dev, **{k: v for k, v in hybrid.items() if k != "reader"},
                                   "seconds": round(time.time() - t0, 1)}
        result["reader"] = str(system.reader.name)
        del system
        return result

    def measure(self, key: str, system, known_answers: dict | None = None) -> dict:
        """EM / F1 on the test questions, retrieval metrics on the retrieval ones; predictions saved."""
        from ..evaluate.qa import evaluate_qa

        cfg = self.cfg
        t0 = time.time()
        result = evaluate_qa(system, self.test, n_passages=cfg.train.n_passages, max_new_tokens=cfg.max_new_tokens,
                             batch_size=cfg.generate_batch_size, progress=self.progress,
                             known_answers=known_answers)
        predictions = result.pop("predictions")
        result["n_em_questions"] = len(self.test)
        retrieved = predictions
        if len(self.retrieval_test) > len(self.test):
            # retrieval is cheap: measure it on more questions than the generation covers
            wide = evaluate_qa(system, self.retrieval_test, n_passages=cfg.train.n_passages, with_reader=False,
                               progress=False)
            retrieved = wide.pop("predictions")
            result.update({k: v for k, v in wide.items() if k != "retrieval_seconds"})
        result["n_retrieval_questions"] = len(self.retrieval_test)
        with atomic_open(self.out / "predictions" / f"{key}.jsonl") as fh:
            for row in predictions:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        with atomic_open(self.out / "predictions" / f"{key}{RETRIEVAL_SUFFIX}") as fh:  # what the bootstrap pairs
            for row in retrieved:
                fh.write(json.dumps({"id": row["id"], "retrieved": row["retrieved"]}, ensure_ascii=False) + "\n")
        result["eval_seconds"] = round(time.time() - t0, 1)
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
                               self.cfg.train.n_passages)
        with tqdm(total=len(examples), desc="indicators", unit="q", disable=not self.progress) as bar:
            results = measure(as_analysis_reader(system.reader), questions, passages,
                              [gold_answer(e) for e in examples], signal=self.cfg.indicator_signal,
                              relatedness=self.cfg.relatedness, progress=bar)
        return aggregate([r.stats for r in results])


HYBRID_DEPTH = DEFAULT_DEPTH  # passages from each side of a hybrid before fusing (attnrag.retrieval.hybrid)


def first_stage_intervals(out: Path, results: dict, examples: list[QAExample]) -> dict | None:
    """Every row's final retriever (dense, or its hybrid with BM25, as dev picks) against the best
    first stage a user has (picked on dev; also the one best on test): the gain in test gold
    recall@1 with a 95% paired bootstrap interval over the same questions
    (:func:`attnrag.evaluate.bootstrap.paired_bootstrap`), from the rows' saved retrievals."""
    from ..evaluate.bootstrap import gold_hits_at_k, paired_bootstrap
    from .report import best_first_stage, final_retriever

    best = best_first_stage(results)
    labelled = [e for e in examples if e.gold_passage_ids]
    if best is None or len(labelled) < 2:
        return None
    by_id = {e.id: e for e in labelled}

    def hits(prediction_key: str):
        path = out / "predictions" / f"{prediction_key}{RETRIEVAL_SUFFIX}"
        if not path.is_file():
            return None
        rows = {r["id"]: r["retrieved"] for r in map(json.loads, path.read_text(encoding="utf-8").splitlines())}
        if not set(by_id) <= set(rows):
            return None
        return gold_hits_at_k([rows[i] for i in by_id], list(by_id.values()), 1)

    first_stage_key = {"dense": "offtheshelf", "bm25": "bm25",
                       "hybrid": "hybrid" if "hybrid" in results["rows"] else "offtheshelf+bm25"}
    baselines = {"picked_on_dev": best["picked_on_dev"], "best_on_test": best["best_on_test"]}
    base_hits = {name: hits(first_stage_key[kind]) for name, kind in baselines.items() if kind}
    out_rows = {}
    for key, record in results["rows"].items():
        if record.get("status") != "done" or key in ("bm25", "hybrid"):
            continue
        final = final_retriever(record)
        if final is None:
            continue
        mine = hits(f"{key}+bm25" if final["kind"] == "hybrid" else key)
        if mine is None:
            continue
        out_rows[key] = {"final": final["kind"], **{
            f"vs_{name}": {"baseline": baselines[name], **paired_bootstrap(mine, base)}
            for name, base in base_hits.items() if base is not None}}
    return {"metric": "gold_recall@1", "n": len(labelled), **baselines, "rows": out_rows}
def _without_rows(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "rows"}


def _manifest(run: Path) -> dict:
    return RunDir(run).manifest()


def _last_event(run: Path, event: str) -> dict | None:
    """The last ``event`` line of the run's metrics, without its time and stage."""
    path = RunDir(run).metrics_path
    if not path.is_file():
        return None
    last = None
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("event") == event:
            last = {k: v for k, v in row.items() if k not in ("time", "stage", "event")}
    return last


def _teacher_stats(run: Path) -> dict | None:
    """The last teacher summary the run logged (top-1 gold accuracy of the teacher, when gold ids exist)."""
    path = RunDir(run).metrics_path
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
def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, file=sys.stderr, flush=True)


__all__ = ["run_paper_experiment"]
