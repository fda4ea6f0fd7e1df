"""Every file a saved index holds, truncated or malformed, is refused with one line naming the file
and the way out (rebuild), never a traceback from json, FAISS or bm25s."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attnrag.data.records import Passage
from attnrag.errors import InputError
from attnrag.retrieval.encoder import BiEncoder
from attnrag.retrieval.hybrid import HybridIndex
from attnrag.retrieval.index import build_index
from attnrag.retrieval.lexical import BM25Index
from attnrag.retrieval.store import load_indexed_corpus

PASSAGES = [Passage(f"p{i}", f"Title {i}", f"Passage {i} tells of apples, pears and item {i}.") for i in range(12)]


@pytest.fixture(scope="module")
def indexes(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("indexes")
    dense = build_index(PASSAGES, BiEncoder.from_pretrained(tiny_bert_dir, device="cpu"), progress=False)
    dense.save(root / "dense")
    BM25Index.build(PASSAGES).save(root / "bm25")
    HybridIndex(BM25Index.build(PASSAGES), dense, "convex", 0.5, 10).save(root / "hybrid")
    return root


def _copy(indexes, kind, tmp_path):
    import shutil

    target = tmp_path / kind
    shutil.copytree(indexes / kind, target)
    return target


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: max(1, len(data) // 2)])


DAMAGE = [
    ("dense", "meta.json"), ("dense", "ids.json"), ("dense", "index.faiss"), ("dense", "passages.jsonl"),
    ("bm25", "meta.json"), ("bm25", "ids.json"), ("bm25", "passages.jsonl"), ("bm25", "bm25/params.index.json"),
    ("bm25", "bm25/vocab.index.json"), ("bm25", "bm25/data.csc.index.npy"), ("bm25", "bm25/indices.csc.index.npy"),
    ("hybrid", "meta.json"), ("hybrid", "lexical/ids.json"), ("hybrid", "dense/index.faiss"),
]


@pytest.mark.parametrize(("kind", "name"), DAMAGE)
def test_a_truncated_file_is_named(indexes, tmp_path, kind, name):
    directory = _copy(indexes, kind, tmp_path)
    _truncate(directory / name)
    with pytest.raises(InputError) as err:
        load_indexed_corpus(directory)
    message = str(err.value)
    # the damaged file (or, for bm25s' arrays, the folder holding them) is named
    assert name in message or str((directory / name).parent) in message, message


@pytest.mark.parametrize(("kind", "name", "content"), [
    ("dense", "ids.json", '{"p0": 1}'), ("dense", "ids.json", "[1, 2]"), ("dense", "meta.json", "[]"),
    ("dense", "passages.jsonl", '{"id": "p0"}\n'), ("bm25", "meta.json", '"bm25"'),
])
def test_a_malformed_file_is_named(indexes, tmp_path, kind, name, content):
    directory = _copy(indexes, kind, tmp_path)
    (directory / name).write_text(content)
    with pytest.raises(InputError) as err:
        load_indexed_corpus(directory)
    assert name in str(err.value)


def test_retrieve_on_a_damaged_bm25_index_prints_one_line(indexes, tmp_path):
    directory = _copy(indexes, "bm25", tmp_path)
    _truncate(directory / "passages.jsonl")
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "q", "question": "apples?", "answers": ["x"]}) + "\n")
    result = subprocess.run([sys.executable, "-m", "attnrag", "retrieve", "--index", str(directory), "--questions",
                             str(questions), "--k", "2", "--out", str(tmp_path / "out.jsonl")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "passages.jsonl:" in lines[0] and "rebuild" in lines[0], result.stderr


def test_one_searcher_for_every_saved_index(indexes, tiny_bert_dir):
    """load_searcher turns any saved index into ``search(questions, k) -> (scores, ids)``; the hybrid's
    ranking is the fusion of its two sides' own searches."""
    from attnrag.retrieval.hybrid import fuse_lists
    from attnrag.retrieval.searcher import DenseSearcher, HybridSearcher
    from attnrag.retrieval.store import load_searcher

    questions = ["Which passage tells of item 3?", "pears"]
    dense, passages = load_searcher(indexes / "dense", tiny_bert_dir)
    bm25, _ = load_searcher(indexes / "bm25")
    hybrid, _ = load_searcher(indexes / "hybrid", tiny_bert_dir)
    assert isinstance(dense, DenseSearcher) and isinstance(bm25, BM25Index) and isinstance(hybrid, HybridSearcher)
    assert len(passages) == len(PASSAGES)
    for searcher in (dense, bm25, hybrid):
        scores, ids = searcher.search(questions, 3)
        assert scores.shape == (2, 3) and all(len(row) == 3 and set(row) <= set(passages) for row in ids)
    lex_scores, lex_ids = bm25.search(questions, 10)
    dense_scores, dense_ids = dense.search(questions, 10)
    assert hybrid.search(questions, 3)[1] == fuse_lists(lex_scores, lex_ids, dense_scores, dense_ids, 3, "convex",
                                                         0.5)[1]
    with pytest.raises(InputError, match="no encoder"):
        load_searcher(indexes / "bm25", tiny_bert_dir)


@pytest.mark.parametrize(("kind", "name"), [("dense", "passages.jsonl"), ("dense", "meta.json"),
                                            ("bm25", "passages.jsonl"), ("bm25", "bm25/vocab.index.json"),
                                            ("hybrid", "meta.json"), ("hybrid", "dense/ids.json")])
def test_an_edited_file_is_caught_by_the_checksum_recorded_at_save_time(indexes, tmp_path, kind, name):
    """An edit that leaves the file well-formed (a passage's text changed, a key reordered) would load
    silently: the sha256 recorded in checksums.json at save time names it."""
    directory = _copy(indexes, kind, tmp_path)
    path = directory / name
    if name.endswith(".jsonl"):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        rows[0]["text"] = "An edited passage."
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(json.dumps(json.loads(path.read_text()), indent=3))  # same content, other bytes
    with pytest.raises(InputError, match="checksums.json") as err:
        load_indexed_corpus(directory)
    assert name.split("/")[-1] in str(err.value)


def test_an_index_saved_before_checksums_still_loads(indexes, tmp_path):
    directory = _copy(indexes, "dense", tmp_path)
    (directory / "checksums.json").unlink()
    index, passages = load_indexed_corpus(directory)
    assert len(index) == len(passages) == len(PASSAGES)
