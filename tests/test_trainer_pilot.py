"""The pilot inside every cached distillation: measured on dev against an independent recomputation,
and without effect on the full run (same weights with and without it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from attnrag.data.formats import load_corpus_dir
from attnrag.evaluate.bootstrap import paired_bootstrap
from attnrag.evaluate.metrics import has_answer
from attnrag.retrieval.encoder import BiEncoder
from attnrag.train.config import TrainConfig
from attnrag.train.timing import in_run_estimate, read_metrics
from attnrag.train.trainer import Trainer

from helpers import save_tiny_bert, save_tiny_reader, small_world


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("pilot-assets")
    return {"world": str(small_world(root / "world")), "reader": str(save_tiny_reader(root / "reader")),
            "retriever": str(save_tiny_bert(root / "bert"))}


def run(assets: dict, out: Path, **overrides) -> Path:
    options = dict(data=assets["world"], out=str(out), reader=assets["reader"], retriever=assets["retriever"],
                   setting="offtheshelf-distill", n_passages=3, train_questions=12, distill_steps=4,
                   distill_batch_size=4, eval_every=2, save_every=2, eval_questions=4, indicator_questions=0,
                   seed=5, first_stage="dense", retriever_lr=1e-3, precision="fp32",
                   pilot_steps=3, pilot_questions=8, pilot_dev_questions=10)
    options.update(overrides)
    Trainer(TrainConfig(**options), progress=False).run()
    return out


def events(run_dir: Path, name: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("event") == name]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return BiEncoder.from_pretrained(run_dir / "retriever", device="cpu").state_dict()


@pytest.mark.parametrize("retriever_training", ["query", "full"])
def test_the_pilot_leaves_the_full_run_as_it_would_have_been(assets, tmp_path, retriever_training):
    with_pilot = run(assets, tmp_path / "pilot", retriever_training=retriever_training)
    without = run(assets, tmp_path / "none", retriever_training=retriever_training, pilot_steps=0)
    assert events(without, "pilot") == [] and len(events(with_pilot, "pilot")) == 1
    a, b = weights(with_pilot), weights(without)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit for bit
    # and the pilot's own steps were taken (3 of them), apart from the run's distillation steps
    rows = [json.loads(line) for line in (with_pilot / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("stage") == "pilot" and "loss" in r] == [1, 2, 3]
    assert [r["step"] for r in rows if r.get("stage") == "distill" and "loss" in r] == [1, 2, 3, 4]
    # its log feeds the wall-time estimator: the dev retrieval is marked, the estimate and what the full
    # loop took are both positive, and a tied tower's re-encodings (evaluations at steps 2 and 4) counted
    assert len(events(with_pilot, "pilot_dev_retrieved")) == 1
    got = in_run_estimate(read_metrics(with_pilot / "metrics.jsonl"), distill_steps=4, eval_every=2)
    assert got["estimated_seconds"] > 0 and got["actual_seconds"] > 0
    assert got["refreshes"] == (2 if retriever_training == "full" else 0)


def test_the_pilot_is_measured_paired_on_dev_answers(assets, tmp_path):
    out = run(assets, tmp_path / "run")
    pilot = events(out, "pilot")[0]
    assert (pilot["questions"], pilot["steps"], pilot["dev_questions"]) == (8, 3, 10) and pilot["seconds"] > 0
    # "before" recomputed independently: the starting retriever's dense top 1 / top 5 on the first 10
    # dev questions with an answer, matched with has_answer
    passages, splits = load_corpus_dir(assets["world"])
    dev = [e for e in splits["dev"] if e.answers][:10]
    from attnrag.evaluate.qa import load_system
    from attnrag.evaluate.retrieval import evaluate_retrieval

    system = load_system(retriever=assets["retriever"], passages=passages, load_reader=False, device="cpu")
    ids = evaluate_retrieval(system.index, system.passages, system.retriever, dev, ks=[5])["retrieved_ids"]
    by_id = {p.id: p for p in passages}
    for k in (1, 5):
        hits = np.array([any(has_answer(by_id[p].text, e.answers) for p in row[:k]) for row, e in zip(ids, dev)])
        change = pilot[f"answer_recall@{k}"]
        assert change["before"] == pytest.approx(hits.mean())
        assert change["delta"] == pytest.approx(change["after"] - change["before"])
        assert change["low"] <= change["delta"] <= change["high"] and change["n"] == 10


def test_the_pilot_interval_is_the_paired_bootstrap_of_the_two_hit_vectors():
    data = np.random.default_rng(7)
    before = (data.random(80) < 0.4).astype(float)
    after = np.maximum(before, (data.random(80) < 0.25).astype(float))  # gains on some questions
    after[:5] = 0.0  # and losses on others
    got = paired_bootstrap(after, before)
    assert got["delta"] == pytest.approx((after - before).mean())
    # a hand bootstrap of the same differences, same percentile rule: the interval agrees to resampling noise
    rng = np.random.default_rng(1)
    d = after - before
    means = d[rng.integers(0, len(d), size=(20000, len(d)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    assert got["low"] == pytest.approx(low, abs=0.015) and got["high"] == pytest.approx(high, abs=0.015)


def test_no_pilot_without_a_dev_split(assets, tmp_path):
    world = Path(assets["world"])
    bare = tmp_path / "no-dev"
    bare.mkdir()
    for name in ("passages.jsonl", "train.jsonl"):
        (bare / name).write_bytes((world / name).read_bytes())
    out = run({**assets, "world": str(bare)}, tmp_path / "run")
    assert events(out, "pilot") == []


def test_a_tied_towers_dev_pool_covering_the_corpus_gives_the_corpus_retrieval(assets, tmp_path):
    """The tied tower's pilot re-ranks each dev question's top ``pilot_pool`` of the starting retriever
    instead of re-encoding the corpus. With a pool as large as the corpus the two paths must agree:
    the same pilot (same seed, steps and weights) measured by re-encoding the corpus (pool 0) and by
    re-ranking every passage gives the same "after" hits; a small pool re-encodes only its passages."""
    corpus = len(load_corpus_dir(assets["world"])[0])
    whole = run(assets, tmp_path / "corpus", retriever_training="full", pilot_pool=0, pilot_only=True)
    pooled = run(assets, tmp_path / "pool", retriever_training="full", pilot_pool=corpus, pilot_only=True)
    a, b = events(whole, "pilot")[0], events(pooled, "pilot")[0]
    for name in ("answer_recall@1", "answer_recall@5"):
        assert (a[name]["before"], a[name]["after"]) == (b[name]["before"], b[name]["after"])
    assert events(whole, "index_refresh") and not events(pooled, "index_refresh")
    assert events(pooled, "pilot_pool_encoded")[0]["passages"] == corpus
    small = run(assets, tmp_path / "small", retriever_training="full", pilot_pool=6, pilot_only=True)
    encoded = events(small, "pilot_pool_encoded")[0]
    assert encoded["corpus"] == corpus and 6 <= encoded["passages"] <= 10 * 6 < corpus
    assert events(small, "pilot")[0]["pool"] == 6 and events(whole, "pilot")[0]["pool"] is None


def test_pilot_only_stops_after_the_pilot_and_leaves_the_retriever(assets, tmp_path):
    out = run(assets, tmp_path / "run", retriever_training="full", pilot_only=True, pilot_batch_size=2)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r.get("stage") == "pilot" and "loss" in r] == [1, 2, 3]
    assert not [r for r in rows if r.get("stage") == "distill" and "loss" in r]  # no full distillation
    assert events(out, "pilot")[0]["batch_size"] == 2
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["final"] and manifest["passage_tower_changed"] is False
    assert not (out / "retriever").exists() and manifest["retriever"] == str(Path(assets["retriever"]).resolve())


@pytest.mark.parametrize("bad", [dict(pilot_only=True, pilot_steps=0), dict(pilot_only=True, setting="reader"),
                                 dict(pilot_only="yes"), dict(pilot_batch_size=0), dict(pilot_pool=-1)])
def test_pilot_options_are_checked(assets, tmp_path, bad):
    from attnrag.errors import InputError

    field = next(iter(k for k in bad if k != "setting" and k != "pilot_steps"), "pilot_only")
    with pytest.raises(InputError) as err:
        TrainConfig(data=assets["world"], out=str(tmp_path), **bad).validate()
    assert err.value.field == field


def test_the_pilots_batch_defaults_to_the_towers(assets, tmp_path):
    """A query tower's pilot steps are cheap: it takes the run's own batch; a tied tower's re-embed every
    candidate with gradient: it takes 8 (TIED_PILOT_BATCH_SIZE), whatever the run's batch; set, it wins."""
    from attnrag.train.config import TIED_PILOT_BATCH_SIZE

    base = dict(data=assets["world"], out=str(tmp_path), distill_batch_size=32)
    assert TrainConfig(**base).resolved_pilot_batch_size == 32
    assert TrainConfig(**base, retriever_training="full").resolved_pilot_batch_size == TIED_PILOT_BATCH_SIZE == 8
    assert TrainConfig(**base, retriever_training="full", pilot_batch_size=3).resolved_pilot_batch_size == 3
    out = run(assets, tmp_path / "run", retriever_training="full", pilot_only=True)  # 8 pilot questions
    assert events(out, "pilot")[0]["batch_size"] == min(TIED_PILOT_BATCH_SIZE, 8)
    out = run(assets, tmp_path / "query", pilot_only=True)  # a query tower: the run's batch of 4
    assert events(out, "pilot")[0]["batch_size"] == 4
