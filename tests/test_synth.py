"""The synthetic world: deterministic, well-formed, one gold passage per question holding the answer."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from attnrag.data.formats import load_corpus_dir, load_qa, write_dpr_tsv, write_nq_open, write_qa
from attnrag.data.synth import MAX_WORDS, MIN_WORDS, World, contains_answer, generate_world, write_world


@pytest.fixture(scope="module")
def small() -> World:
    return generate_world(seed=0, size="small")


def _digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(directory.iterdir()):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def test_small_counts(small):
    assert len(small.passages) == 300
    assert (len(small.train), len(small.dev), len(small.test)) == (200, 50, 50)


def test_default_sizes():
    world = generate_world(seed=0, size="default")
    assert len(world.passages) >= 3000
    assert (len(world.train), len(world.dev), len(world.test)) == (2000, 300, 300)


def test_unknown_size():
    with pytest.raises(ValueError, match="unknown size"):
        generate_world(0, "huge")


def test_same_seed_same_bytes_across_processes(tmp_path):
    """Byte-identical files for one seed, also under a different string-hash seed."""
    write_world(generate_world(seed=3, size="small"), tmp_path / "a")
    code = ("import sys; from attnrag.data.synth import generate_world, write_world; "
            "write_world(generate_world(seed=3, size='small'), sys.argv[1])")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], check=True, env=env)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [
        "dev.jsonl", "passages.jsonl", "test.jsonl", "train.jsonl", "world.json"]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    write_world(generate_world(seed=4, size="small"), tmp_path / "c")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_world_json(tmp_path, small):
    meta = json.loads((write_world(small, tmp_path) / "world.json").read_text())
    assert (meta["seed"], meta["size"]) == (0, "small")
    assert meta["counts"] == {"passages": 300, "train": 200, "dev": 50, "test": 50}
    assert sum(sum(c.values()) for c in meta["questions_per_relation"].values()) == 300


def test_each_question_has_one_gold_passage_with_the_answer(small):
    by_id = {p.id: p for p in small.passages}
    assert len(by_id) == len(small.passages)
    by_title = defaultdict(list)
    for p in small.passages:
        by_title[p.title].append(p)
    for split, examples in small.splits().items():
        assert len({e.id for e in examples}) == len(examples)
        for ex in examples:
            assert len(ex.gold_passage_ids) == 1, ex
            gold = by_id[ex.gold_passage_ids[0]]
            assert len(ex.answers) == 1 and 1 <= len(ex.answers[0].split()) <= 3, ex
            assert ex.answers[0] in gold.text, (ex, gold)  # verbatim
            # Within the asked entity, only the gold passage holds the answer.
            for other in by_title[gold.title]:
                if other.id != gold.id:
                    assert not contains_answer(other.text, ex.answers[0]), (ex, other)


def test_passages_are_short(small):
    for p in small.passages:
        assert MIN_WORDS <= len(p.text.split()) <= MAX_WORDS, p
    per_entity = defaultdict(int)
    for p in small.passages:
        per_entity[p.title] += 1
    assert set(per_entity.values()) == {5}


def test_splits_ask_about_disjoint_entities(small):
    by_id = {p.id: p for p in small.passages}
    entities = {s: {by_id[e.gold_passage_ids[0]].title for e in exs} for s, exs in small.splits().items()}
    assert not entities["train"] & entities["test"]
    assert not entities["train"] & entities["dev"]
    assert not entities["dev"] & entities["test"]
    # ... but the relations asked are shared, so a retriever can learn them on train.
    rel = {s: {small.relations[e.id].split(".")[0] for e in exs} for s, exs in small.splits().items()}
    assert rel["test"] <= rel["train"]


def test_written_world_loads_strictly(tmp_path, small):
    passages, splits = load_corpus_dir(write_world(small, tmp_path / "w"))
    assert passages == small.passages
    assert splits == small.splits()


def test_world_converts_to_real_formats(tmp_path, small):
    """DPR tsv + attnrag QA files load as a corpus; NQ-open keeps questions and answers."""
    d = tmp_path / "dpr"
    write_dpr_tsv(d / "psgs_w100.tsv", small.passages)
    write_qa(d / "test.jsonl", small.test)
    passages, splits = load_corpus_dir(d)
    assert passages == small.passages
    assert splits["test"] == small.test
    write_nq_open(tmp_path / "NQ-open.test.jsonl", small.test)
    nq = load_qa(tmp_path / "NQ-open.test.jsonl")
    assert [(e.question, e.answers) for e in nq] == [(e.question, e.answers) for e in small.test]
