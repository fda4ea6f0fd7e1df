"""The trainer's first stage (``first_stage`` bm25 / hybrid) and DPR's answer-match supervision.

A one-step distillation whose teacher scores BM25's candidates runs on a slice of every real set in
``../shared/data`` (tiny random-weight models), and the candidates it cached are BM25's own top-k,
computed independently. The answer-match positives are checked against DPR's ``has_answer``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import save_tiny_bert, save_tiny_reader, small_world

from attnrag.data.formats import load_corpus_dir
from attnrag.errors import InputError
from attnrag.evaluate.metrics import has_answer
from attnrag.retrieval.lexical import BM25Index
from attnrag.train.config import TrainConfig
from attnrag.train.trainer import Trainer, select_subset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_SETS = ("covidqa-open", "nq-oracle-dev", "squad-open-dev", "tweetqa-open")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _slice(name: str, out: Path) -> Path:
    """The first 10 train / 4 dev questions, their gold passages and the next 40 passages."""
    source = SHARED / name
    out.mkdir(parents=True, exist_ok=True)
    keep: set[str] = set()
    for split, n in (("train", 10), ("dev", 4)):
        rows = _read(source / f"{split}.jsonl")[:n]
        keep.update(pid for row in rows for pid in row.get("gold_passage_ids", []))
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    chosen, rest = [], 0
    with (source / "passages.jsonl").open(encoding="utf-8") as fh:  # NQ's file is large: stream it
        for line in fh:
            p = json.loads(line)
            if p["id"] in keep:
                chosen.append(p)
            elif rest < 40:
                chosen.append(p)
                rest += 1
            if rest >= 40 and len(chosen) >= len(keep) + 40:
                break
    (out / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in chosen), encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("first-stage-models")
    return {"reader": str(save_tiny_reader(root / "reader")), "retriever": str(save_tiny_bert(root / "bert"))}


def _config(data: Path, out: Path, models: dict, **overrides) -> TrainConfig:
    options = dict(setting="offtheshelf-distill", data=str(data), out=str(out), reader=models["reader"],
                   retriever=models["retriever"], n_passages=3, distill_passages=4, distill_steps=1,
                   distill_batch_size=4, eval_every=1, eval_questions=4, indicator_questions=0, train_questions=10,
                   first_stage="dense")
    options.update(overrides)
    cfg = TrainConfig(**options)
    cfg.prompt.max_passage_tokens = 48
    cfg.prompt.max_answer_tokens = 4
    return cfg


@pytest.mark.parametrize("name", REAL_SETS)
def test_one_step_distillation_from_bm25_candidates_on_a_real_slice(name, tmp_path, models):
    if not (SHARED / name).is_dir():
        pytest.skip(f"../shared/data/{name} is not available")
    data = _slice(name, tmp_path / "data")
    cfg = _config(data, tmp_path / "run", models, first_stage="bm25")
    manifest = Trainer(cfg, progress=False).run()
    assert manifest["final"] and manifest["first_stage"]["first_stage"] == "bm25"
    cache = torch.load(tmp_path / "run" / "teacher_cache.pt", weights_only=True)
    passages, splits = load_corpus_dir(data)
    questions = {e.id: e.question for e in splits["train"]}
    _, expected = BM25Index.build(passages).search([questions[q] for q in cache["question_ids"]], 4)
    assert cache["candidate_ids"] == expected  # the teacher scored BM25's top 4, not the dense retriever's
    rows = _read(tmp_path / "run" / "metrics.jsonl")
    assert any(r.get("stage") == "distill" and "loss" in r for r in rows)
    evals = [r for r in rows if r.get("event") == "eval"]
    assert evals and "dev_gold_recall@1" in evals[-1] and "dev_bm25_gold_recall@1" in evals[-1]


def test_hybrid_first_stage_tunes_its_weight_on_dev_and_keeps_it_on_resume(tmp_path, models):
    name = "tweetqa-open"
    if not (SHARED / name).is_dir():
        pytest.skip(f"../shared/data/{name} is not available")
    data = _slice(name, tmp_path / "data")
    run = tmp_path / "run"
    cfg = _config(data, run, models, first_stage="hybrid", distill_steps=2, save_every=1)
    Trainer(cfg, progress=False).run()
    record = json.loads((run / "first_stage.json").read_text())
    table = record["hybrid_tuning"]["table"]
    assert len(table) == 11 and record["hybrid_weight"] in {float(w) for w in table}
    assert table[str(record["hybrid_weight"])] == max(table.values())
    # a resumed run reads the stored weight back instead of tuning again with the trained retriever
    record["hybrid_weight"] = 0.3
    (run / "first_stage.json").write_text(json.dumps(record))
    (run / "run.json").unlink()
    trainer = Trainer(cfg, resume=True, progress=False)
    trainer._load()
    assert trainer.hybrid_weight == 0.3
    # the hybrid is built once, and again only when the dense index is replaced (a tied tower's refresh)
    first = trainer._first_stage()
    assert trainer._first_stage() is first and first.weight == 0.3 and first.dense.index is trainer.index
    trainer._refresh_index()
    assert trainer._first_stage() is not first and trainer._first_stage().dense.index is trainer.index


def test_answer_target_takes_the_top_answer_bearing_candidate(tmp_path, models):
    world = small_world(tmp_path / "world")
    run = tmp_path / "run"
    cfg = _config(world, run, models, first_stage="bm25", target="answer", train_questions=12,
                  distill_passages=5, distill_steps=2)
    Trainer(cfg, progress=False).run()
    event = next(r for r in _read(run / "metrics.jsonl") if r.get("event") == "targets")
    # independently: BM25's top 5 for the same distillation questions, DPR's answer match on the text
    passages, splits = load_corpus_dir(world)
    by_id = {p.id: p for p in passages}
    examples = select_subset(select_subset(splits["train"], 12, cfg.seed), None, cfg.seed + 1)
    _, ids = BM25Index.build(passages).search([e.question for e in examples], 5)
    positives = [next((p for p in row if has_answer(by_id[p].text, e.answers)), None) for e, row in zip(examples, ids)]
    labelled = [(e, p) for e, p in zip(examples, positives) if p is not None]
    assert (event["target"], event["loss_kind"]) == ("answer", "in-batch")
    assert event["questions"] == len(examples) and event["left_out"] == len(examples) - len(labelled)
    assert event["favourite_holds_answer"] == 1.0  # the positive is answer-bearing by construction
    assert event["favourite_is_gold"] == pytest.approx(
        sum(p in e.gold_passage_ids for e, p in labelled) / len(labelled))


@pytest.mark.parametrize("bad", [
    {"first_stage": "splade"},
    {"first_stage": "dense", "hybrid_weight": 0.5},
    {"first_stage": "hybrid", "hybrid_weight": 1.5},
    {"first_stage": "hybrid", "hybrid_depth": 0},
    {"target": "answer", "distill_mode": "online"},
    {"target": "labels"},
    {"loss": "hinge"},
    {"gate_fallback": "never"},
    {"loss": "emdr"},  # without the emdr teacher
    {"target": "answer-gated", "teacher_answers": "generated"},
    {"teacher_answers": "generated", "distill_mode": "online"},  # the online teacher forces the gold answer
    {"teacher_answers": "generated", "setting": "joint"},
])
def test_first_stage_options_are_validated(bad):
    field = ("target" if "target" in bad else list(bad)[0] if "teacher_answers" in bad
             else list(bad)[-1]).replace("hybrid_", "hybrid.")  # the flat names of run configs before FusionConfig
    with pytest.raises(InputError) as err:
        TrainConfig.from_dict({"data": "d", "out": "o", **bad}).validate()
    assert err.value.field == field


def test_a_dev_less_hybrid_without_a_weight_is_refused(tmp_path, models):
    world = small_world(tmp_path / "world")
    (world / "dev.jsonl").unlink()
    with pytest.raises(InputError, match="dev"):
        Trainer(_config(world, tmp_path / "run", models, first_stage="hybrid"), progress=False).run()


def test_no_first_stage_given_means_the_hybrid_where_there_is_a_dev_split(tmp_path, models):
    """The default follows the committed dev evidence: the dev-tuned hybrid with a dev split; without
    one, the dense retriever; either way one line says why and first_stage.json records it."""
    import shutil

    world = small_world(tmp_path / "world")
    with_dev = Trainer(_config(world, tmp_path / "a", models, first_stage=None), progress=False)
    with_dev._load()
    assert with_dev.first_stage == "hybrid" and with_dev.hybrid_weight is not None
    record = json.loads((tmp_path / "a" / "first_stage.json").read_text())
    assert record["first_stage"] == "hybrid" and "dev" in record["chosen_because"]
    assert {"command", "commit", "machine"} <= set(record["provenance"])  # a reader can tell what chose it
    no_dev = tmp_path / "no-dev"
    shutil.copytree(world, no_dev)
    (no_dev / "dev.jsonl").unlink()
    without = Trainer(_config(no_dev, tmp_path / "b", models, first_stage=None, eval_questions=0), progress=False)
    without._load()
    assert without.first_stage == "dense" and "no dev split" not in without.first_stage_record["chosen_because"]
    assert "has none" in without.first_stage_record["chosen_because"]
    explicit = Trainer(_config(world, tmp_path / "c", models, first_stage="bm25"), progress=False)
    explicit._load()
    assert explicit.first_stage == "bm25" and "chosen_because" not in explicit.first_stage_record
