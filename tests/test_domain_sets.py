"""The two real domains the retriever never saw (COVID-QA, TweetQA, in ``../shared/data``): their files
load with the counts the data README states, and a one-step distillation, a supervised step and a
questions-only step run on a slice of each with tiny random-weight models. Skipped cleanly where
``../shared/data`` is absent (a user's clone)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import save_tiny_reader

from attnrag.data.formats import load_corpus_dir
from attnrag.train.config import TrainConfig
from attnrag.train.trainer import Trainer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {  # passages, train / dev / test questions (../shared/data/README.md)
    "covidqa-open": (6813, 1417, 203, 375),
    "tweetqa-open": (4318, 5467, 607, 847),
}


def _needs(name: str):
    return pytest.mark.skipif(not (SHARED / name).is_dir(), reason=f"../shared/data/{name} is not available")


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(SETS))
def test_loader_reads_the_whole_set(name):
    if not (SHARED / name).is_dir():
        pytest.skip(f"../shared/data/{name} is not available")
    passages, splits = load_corpus_dir(SHARED / name)
    n_passages, n_train, n_dev, n_test = SETS[name]
    assert len(passages) == n_passages
    assert (len(splits["train"]), len(splits["dev"]), len(splits["test"])) == (n_train, n_dev, n_test)
    ids = {p.id for p in passages}
    assert all(e.gold_passage_ids and set(e.gold_passage_ids) <= ids for split in splits.values() for e in split)


def _slice(name: str, out: Path) -> Path:
    """The first 10 train / 4 dev questions, their gold passages and the next 30 passages as the corpus."""
    source = SHARED / name
    keep: set[str] = set()
    for split, n in (("train", 10), ("dev", 4)):
        rows = _read(source / f"{split}.jsonl")[:n]
        keep.update(pid for row in rows for pid in row["gold_passage_ids"])
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    passages = _read(source / "passages.jsonl")
    chosen = [p for p in passages if p["id"] in keep] + [p for p in passages if p["id"] not in keep][:30]
    (out / "passages.jsonl").write_text("".join(json.dumps(p) + "\n" for p in chosen), encoding="utf-8")
    return out


@pytest.mark.parametrize("mode", ["distill", "supervised", "questions-only", "tied"])
@pytest.mark.parametrize("name", sorted(SETS))
def test_one_step_on_a_slice(name, mode, tmp_path, tiny_bert_dir, monkeypatch):
    if not (SHARED / name).is_dir():
        pytest.skip(f"../shared/data/{name} is not available")
    if mode == "questions-only":  # a random-weight reader may generate nothing: give it an answer to attend from
        from attnrag.reader.decoder import DecoderReader

        monkeypatch.setattr(DecoderReader, "generate", lambda self, questions, passages, **kw: ["the answer"] * len(questions))
    data = _slice(name, tmp_path)
    reader = save_tiny_reader(tmp_path / "reader")
    extra = {"supervised": {"target": "gold"}, "questions-only": {"teacher_answers": "generated"},
             "tied": {"retriever_training": "full"}}.get(mode, {})
    cfg = TrainConfig(setting="offtheshelf-distill", data=str(data), out=str(tmp_path / "run"), reader=str(reader),
                      retriever=str(tiny_bert_dir), n_passages=3, distill_passages=4, distill_steps=1,
                      distill_batch_size=4, eval_every=1, eval_questions=4, indicator_questions=0,
                      train_questions=10, first_stage="dense", **extra)
    cfg.prompt.max_passage_tokens = 48
    cfg.prompt.max_answer_tokens = 4
    manifest = Trainer(cfg, progress=False).run()
    assert manifest["final"]
    rows = _read(tmp_path / "run" / "metrics.jsonl")
    assert any(r.get("stage") == "distill" and "loss" in r for r in rows)
    assert any("dev_gold_recall@1" in r for r in rows)
    if mode == "tied":  # both towers trained: the run retrieves from its own re-encoded index
        assert manifest["passage_tower_changed"] and (tmp_path / "run" / "index" / "index.faiss").is_file()


PAIRS = [(target, loss) for target in ("teacher", "teacher-top1", "answer", "answer-gated", "gold")
         for loss in ("candidates", "in-batch")]


@_needs("tweetqa-open")
@pytest.mark.parametrize(("target", "loss"), PAIRS)
def test_every_target_with_either_loss_takes_a_step_on_tweetqa(target, loss, tmp_path, tiny_bert_dir):
    """One step of each (target, loss) pair on a TweetQA slice with BM25 candidates and the tied
    tower (the grid's setting): the run logs its target's statistics and a finite loss that moved
    the retriever."""
    import torch

    from attnrag.retrieval.encoder import BiEncoder

    data = _slice("tweetqa-open", tmp_path)
    reader = save_tiny_reader(tmp_path / "reader")
    cfg = TrainConfig(setting="offtheshelf-distill", data=str(data), out=str(tmp_path / "run"), reader=str(reader),
                      retriever=str(tiny_bert_dir), n_passages=3, distill_passages=4, distill_steps=1,
                      distill_batch_size=4, eval_every=1, eval_questions=4, indicator_questions=0,
                      train_questions=10, first_stage="bm25", retriever_training="full", retriever_lr=1e-3,
                      target=target, loss=loss, gate_fallback="teacher")
    cfg.prompt.max_passage_tokens = 48
    Trainer(cfg, progress=False).run()
    rows = _read(tmp_path / "run" / "metrics.jsonl")
    event = next(r for r in rows if r.get("event") == "targets")
    assert (event["target"], event["loss_kind"]) == (target, loss)
    assert event["questions"] == 10 and 0 <= event["left_out"] < 10
    if target in ("answer", "answer-gated"):  # TweetQA's answers occur in their tweets
        assert event["favourite_holds_answer"] > 0
    step = next(r for r in rows if r.get("stage") == "distill" and "loss" in r)
    assert step["loss"] >= 0 and step["loss"] == step["loss"]
    base = BiEncoder.from_pretrained(tiny_bert_dir, device="cpu").state_dict()
    trained = BiEncoder.from_pretrained(tmp_path / "run" / "retriever", device="cpu").state_dict()
    assert any(not torch.equal(trained[k], base[k]) for k in base)
