"""``attnrag demo``: the paper's four-row comparison on the embedded world, on a laptop CPU.

Rows (all evaluated on the same ``test.jsonl``):

1. **off-the-shelf checkpoint**: the pretrained reader with the zero-shot retriever;
2. **off-the-shelf distillation**: the retriever distilled from the *un-fine-tuned* reader;
3. **fine-tuned reader, zero-shot retriever**: the ``reader`` setting;
4. **fine-tuned distillation**: the retriever distilled from the fine-tuned reader.

Row 3 is the reader stage of row 4's ``finetuned-distill`` run (the same computation as
``attnrag train --setting reader``), evaluated with the zero-shot retriever, so the demo fine-tunes
the reader once. Every stage is resumable: re-running the command skips finished runs and rows.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import torch

from ..analysis.indicators import attach_indicators
from ..data.formats import load_qa
from ..data.synth import generate_world, write_world
from ..evaluate.qa import System, evaluate_qa, load_system
from ..errors import InputError
from ..io import atomic_open, write_json
from ..models import DEFAULT_READER, DEFAULT_RETRIEVER
from ..reader.factory import load_reader
from ..retrieval.encoder import BiEncoder
from ..retrieval.index import build_index, load_indexed_corpus
from ..train.config import TrainConfig
from ..train.trainer import Trainer
from .config import DemoConfig
from .report import demo_table, render_demo_report
from ..provenance import Provenance
from ..run import RunDir


def run_demo(out: str | Path, quick: bool = False, seed: int = 0, config: DemoConfig | None = None,
             progress: bool = True) -> dict:
    """Run (or resume) the demo into ``out`` and return the content of its ``results.json``."""
    out = Path(out)
    cfg = config or (DemoConfig.quick() if quick else DemoConfig())
    torch.manual_seed(seed)
    prov = Provenance.start()
    started = time.time()
    world = out / "world"
    if not (world / "test.jsonl").is_file():
        write_world(generate_world(seed=seed, size=cfg.size), world)
    index_dir = out / "index"
    if not (index_dir / "index.faiss").is_file():
        from ..data.formats import load_passages

        encoder = BiEncoder.from_pretrained(DEFAULT_RETRIEVER)
        build_index(load_passages(world / "passages.jsonl"), encoder, progress=progress).save(index_dir)
    setup_seconds = time.time() - started
    test = load_qa(world / "test.jsonl")
    if cfg.eval_questions:
        test = test[: cfg.eval_questions]

    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else {"rows": {}}
    earlier = results.get("config", {}).get("reader", DEFAULT_READER)
    if results["rows"] and earlier != cfg.reader:  # resuming must not mix two readers' rows
        raise InputError(f"{out} holds demo rows of reader '{earlier}', not '{cfg.reader}'; use another --out",
                         field="--reader")
    # each call of the command (a resumed demo has several) keeps its own provenance record
    calls = results.setdefault("calls", [])
    calls.append(prov.record())
    results.update({"config": asdict(cfg), "seed": seed, "machine": prov.machine, "source": prov.source})
    rows = results["rows"]

    def train(setting: str, **extra) -> Path:
        run_dir = out / "runs" / setting
        if RunDir(run_dir).finished:
            return run_dir
        options = TrainConfig(setting=setting, data=str(world), out=str(run_dir), index=str(index_dir),
                              reader=cfg.reader, n_passages=cfg.n_passages, train_questions=cfg.train_questions,
                              reader_steps=cfg.reader_steps, reader_batch_size=cfg.reader_batch_size,
                              reader_lr=cfg.reader_lr, reader_trainable_layers=cfg.reader_trainable_layers,
                              distill_questions=cfg.distill_questions, distill_steps=cfg.distill_steps,
                              distill_passages=cfg.distill_passages,
                              retriever_lr=cfg.retriever_lr, seed=seed, eval_every=cfg.eval_every, save_every=50,
                              **extra)
        trainer = Trainer(options, resume=(run_dir / "config.json").is_file(), progress=progress)
        attach_indicators(trainer)
        trainer.run()
        return run_dir

    def evaluate(key: str, system: System, train_seconds: float) -> None:
        t0 = time.time()
        result = evaluate_qa(system, test, n_passages=cfg.n_passages, max_new_tokens=cfg.max_new_tokens,
                             batch_size=cfg.generate_batch_size, progress=progress)
        predictions = result.pop("predictions")
        with atomic_open(out / "predictions" / f"{key}.jsonl") as fh:
            for row in predictions:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        result["train_seconds"] = round(train_seconds, 1)
        result["eval_seconds"] = round(time.time() - t0, 1)
        result["wall_seconds"] = round(train_seconds + result["eval_seconds"], 1)
        rows[key] = result
        calls[-1] = prov.record()
        write_json(results_path, results)

    index, passages = load_indexed_corpus(index_dir)
    base_retriever = BiEncoder.from_pretrained(DEFAULT_RETRIEVER)

    if "offtheshelf" not in rows:
        reader = load_reader(cfg.reader)
        evaluate("offtheshelf", System(reader, base_retriever, index, passages, "off-the-shelf"), 0.0)

    if "offtheshelf-distill" not in rows:
        t0 = time.time()
        run = train("offtheshelf-distill")
        evaluate("offtheshelf-distill", load_system(run), time.time() - t0)

    if "reader" not in rows or "finetuned-distill" not in rows:
        t0 = time.time()
        run = train("finetuned-distill")
        train_seconds = time.time() - t0
        if "reader" not in rows:
            reader = load_reader(run / "reader")
            evaluate("reader", System(reader, base_retriever, index, passages, "fine-tuned reader"), train_seconds)
        if "finetuned-distill" not in rows:
            evaluate("finetuned-distill", load_system(run), 0.0 if "reader" in rows else train_seconds)

    export_dir = out / "retriever-export"
    if "finetuned-distill" in rows and not (export_dir / "modules.json").is_file():
        from ..api import export_retriever

        row = rows["finetuned-distill"]
        measured = {k: row[k] for k in ("em", "f1", "answer_recall@1", "answer_recall@5", "gold_recall@1",
                                        "gold_recall@5") if k in row}
        export_retriever(out / "runs" / "finetuned-distill", export_dir,
                         metrics={f"test ({'demo world' if cfg.size == 'default' else cfg.size})":
                                  {"n": row.get("n", len(test)), **measured}})
    results["total_wall_seconds"] = round(time.time() - started, 1)
    results["setup_seconds"] = round(setup_seconds, 1)
    results["table"] = demo_table(rows)
    calls[-1] = results["provenance"] = prov.record()
    write_json(results_path, results)
    with atomic_open(out / "report.md") as fh:
        fh.write(render_demo_report(results))
    return results
