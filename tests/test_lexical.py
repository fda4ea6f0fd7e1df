"""BM25 (against a hand computation and against bm25s itself), the fusions (by hand), and the hybrid
index through the same search call as the dense one."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from attnrag.cli import app
from attnrag.data.formats import load_passages
from attnrag.data.records import Passage
from attnrag.errors import InputError
from attnrag.retrieval.hybrid import HybridIndex, fuse, tune_weight
from attnrag.retrieval.index import PassageIndex, search_questions
from attnrag.retrieval.lexical import BM25Config, BM25Index, tokenize
from attnrag.retrieval.store import load_indexed_corpus

from helpers import save_tiny_bert, small_world

TWEETQA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tweetqa-open"
THREE = [Passage("a", "Alpha", "Alpha was born in Velmora by the northern sea; Alpha sailed."),
         Passage("b", "", "Beta likes green tea and long walks by the sea."),
         Passage("c", "Gamma", "Gamma founded the Orrin guild in 1802 with friends.")]


def lucene_bm25(docs: list[list[str]], query: list[str], k1: float, b: float) -> list[float]:
    """Lucene's BM25 written out: sum_t idf * tf / (tf + k1 (1 - b + b |d| / avgdl)),
    idf = ln(1 + (N - df + 0.5) / (df + 0.5))."""
    n, avg = len(docs), sum(map(len, docs)) / len(docs)
    out = []
    for doc in docs:
        total = 0.0
        for term in set(query):
            df = sum(term in d for d in docs)
            tf = doc.count(term)
            if df and tf:
                total += math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf / (tf + k1 * (1 - b + b * len(doc) / avg))
        out.append(total)
    return out


def test_tokens_are_stemmed_without_stop_words():
    assert tokenize(["The guilds were founded by sailing friends"], BM25Config()) == [
        ["guild", "were", "found", "sail", "friend"]]  # bm25s' list keeps "were"


@pytest.mark.parametrize("k1,b", [(1.5, 0.75), (0.9, 0.4)])
def test_bm25_scores_equal_a_hand_computation(k1, b):
    index = BM25Index.build(THREE, BM25Config(k1=k1, b=b))
    docs = tokenize(["Alpha | " + THREE[0].text, THREE[1].text, "Gamma | " + THREE[2].text], BM25Config())
    for question in ["Where was Alpha born by the sea?", "who founded the guild", "sea walks"]:
        scores, ids = index.search([question], 3)
        hand = lucene_bm25(docs, tokenize([question], BM25Config())[0], k1, b)
        got = dict(zip(ids[0], scores[0].tolist()))
        assert [got[p.id] for p in THREE] == pytest.approx(hand, rel=1e-5)


def test_stop_words_or_unknown_terms_score_zero_not_a_traceback():
    index = BM25Index.build(THREE)
    scores, ids = index.search(["the of and", "zyxxy qqq", ""], 2)
    assert ids == [["a", "b"]] * 3 and not scores.any()


@pytest.mark.skipif(not TWEETQA.is_dir(), reason="../shared/data/tweetqa-open is not here")
def test_ranking_equals_bm25s_on_a_real_slice():
    import bm25s
    import Stemmer

    passages = load_passages(TWEETQA / "passages.jsonl")[:600]
    questions = [json.loads(line)["question"] for line in (TWEETQA / "test.jsonl").read_text().splitlines()[:60]]
    ours_scores, ours_ids = BM25Index.build(passages).search(questions, 10)
    # bm25s on its own, the way its README does it
    stemmer = Stemmer.Stemmer("english")
    theirs = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    theirs.index(bm25s.tokenize([p.text for p in passages], stopwords="en", stemmer=stemmer, show_progress=False),
                 show_progress=False)
    docs, scores = theirs.retrieve(bm25s.tokenize(questions, stopwords="en", stemmer=stemmer, show_progress=False),
                                   k=10, show_progress=False)
    assert np.allclose(ours_scores, scores, rtol=1e-5, atol=1e-6)
    # the same ranking up to ties: bm25s' own score of each passage we return, in our order, is its top 10
    row_of = {p.id: i for i, p in enumerate(passages)}
    query_tokens = bm25s.tokenization.convert_tokenized_to_string_list(
        bm25s.tokenize(questions, stopwords="en", stemmer=stemmer, show_progress=False))
    for row, tokens in zip(ours_ids, query_tokens):
        full = theirs.get_scores(tokens)
        assert np.allclose(full[[row_of[p] for p in row]], np.sort(full)[::-1][:10], rtol=1e-5, atol=1e-6)


def test_save_load_round_trip_and_refuses_tampering(tmp_path):
    index = BM25Index.build(THREE, BM25Config(k1=1.2))
    path = index.save(tmp_path / "bm25")
    loaded, passages = load_indexed_corpus(path)
    assert isinstance(loaded, BM25Index) and set(passages) == {"a", "b", "c"}
    question = ["Who founded the Orrin guild?"]
    assert loaded.search(question, 3)[1] == index.search(question, 3)[1]
    meta = json.loads((path / "meta.json").read_text())
    assert meta["bm25"]["k1"] == 1.2 and meta["bm25"]["stemmer"] == "english" and "bm25s" in meta["bm25"]["versions"]
    params = json.loads((path / "bm25" / "params.index.json").read_text())
    (path / "bm25" / "params.index.json").write_text(json.dumps({**params, "__class__": "os.system"}))
    with pytest.raises(InputError, match="checksums.json"):  # the edit is caught by the recorded sha256
        load_indexed_corpus(path)
    (path / "checksums.json").unlink()  # and without it (an index saved before checksums) by the check itself
    with pytest.raises(InputError, match="unexpected BM25 parameters"):
        BM25Index.load(path)


# ------------------------------------------------------------------------------------------- fusion
def test_rrf_by_hand():
    lexical = ([9.0, 5.0, 1.0], ["a", "b", "c"])
    dense = ([0.9, 0.8], ["c", "d"])
    scores, ids = fuse(lexical, dense, 4, "rrf")
    expected = {"a": 1 / 61, "b": 1 / 62, "c": 1 / 63 + 1 / 61, "d": 1 / 62}
    assert ids == ["c", "a", "b", "d"]  # b and d tie: the lexical side's order first
    assert scores == pytest.approx([expected[i] for i in ids])


def test_convex_min_max_by_hand():
    lexical = ([10.0, 6.0, 2.0], ["a", "b", "c"])  # normalised 1, 0.5, 0
    dense = ([0.8, 0.6, 0.4], ["c", "b", "d"])  # normalised 1, 0.5, 0
    scores, ids = fuse(lexical, dense, 4, "convex", weight=0.3)
    expected = {"a": 0.3 * 1, "b": 0.3 * 0.5 + 0.7 * 0.5, "c": 0.3 * 0 + 0.7 * 1, "d": 0.0}
    assert ids == ["c", "b", "a", "d"]
    assert scores == pytest.approx([expected[i] for i in ids])
    assert fuse(lexical, dense, 2, "convex", weight=1.0)[1] == ["a", "b"]
    assert fuse(lexical, dense, 2, "convex", weight=0.0)[1] == ["c", "b"]
    with pytest.raises(InputError, match="weight"):
        fuse(lexical, dense, 2, "convex", weight=1.5)


def test_tune_weight_picks_the_best_and_breaks_ties_towards_half():
    best, table = tune_weight(lambda w: -abs(w - 0.7))
    assert best == 0.7 and len(table) == 11
    assert tune_weight(lambda w: 1.0)[0] == 0.5


class FixedEncoder:
    """A stand-in query encoder: question i -> row i of a matrix."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    def encode_queries(self, questions, batch_size: int = 64):
        return np.stack([self.vectors[q] for q in questions]).astype(np.float32)


def test_hybrid_searches_through_the_one_query_path(tmp_path):
    emb = np.eye(3, dtype=np.float32)
    dense = PassageIndex.build(emb, ["a", "b", "c"], passages={p.id: p for p in THREE})
    question = "Who founded the Orrin guild?"  # BM25: c; the dense side (by construction): b
    encoder = FixedEncoder({question: np.array([0.1, 0.9, 0.0])})
    lexical = BM25Index.build(THREE)
    for weight, top in ((1.0, "c"), (0.0, "b")):
        hybrid = HybridIndex(lexical, dense, "convex", weight, depth=3)
        assert search_questions(hybrid, encoder, [question], 1)[1] == [[top]]
    saved = HybridIndex(lexical, dense, "rrf", 0.5, depth=3).save(tmp_path / "hybrid")
    loaded, passages = load_indexed_corpus(saved)
    assert isinstance(loaded, HybridIndex) and loaded.fusion == "rrf" and len(passages) == 3
    assert search_questions(loaded, encoder, [question], 3)[1] == search_questions(
        HybridIndex(lexical, dense, "rrf", 0.5, depth=3), encoder, [question], 3)[1]
    with pytest.raises(InputError, match="different passages"):
        HybridIndex(BM25Index.build(THREE[:2]), dense)
    # the one hybrid format records its dense side; a meta.json written before it did (version 1) is
    # read as a FAISS index in dense/; a dense path leaving the directory is refused
    meta_path = saved / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["dense"] == {"format": "faiss", "path": "dense"} and meta["lexical"] == "lexical"
    old = {k: v for k, v in meta.items() if k not in ("dense", "lexical", "normalisation")} | {"format_version": 1}
    (saved / "checksums.json").unlink()  # written before checksums were recorded, too
    meta_path.write_text(json.dumps(old))
    assert HybridIndex.load(saved).fusion == "rrf"
    meta_path.write_text(json.dumps({**meta, "dense": {"format": "faiss", "path": "../elsewhere"}}))
    with pytest.raises(InputError, match="inside the directory"):
        HybridIndex.load(saved)
    meta_path.write_text(json.dumps({**meta, "weight": 1.5}))  # checked as every hybrid's options are
    with pytest.raises(InputError, match="meta.json") as err:
        HybridIndex.load(saved)
    assert err.value.field == "weight"


# ------------------------------------------------------------------------------------------- CLI
def test_cli_builds_and_evaluates_bm25_and_a_dev_tuned_hybrid(tmp_path):
    world = small_world(tmp_path / "world")
    runner = CliRunner()
    result = runner.invoke(app, ["index", "build", "--passages", str(world / "passages.jsonl"),
                                 "--out", str(tmp_path / "bm25"), "--kind", "bm25", "--similarity", "cosine"])
    assert isinstance(result.exception, InputError) and "bm25 index takes no dense" in str(result.exception)
    result = runner.invoke(app, ["index", "build", "--passages", str(world / "passages.jsonl"),
                                 "--out", str(tmp_path / "bm25"), "--kind", "bm25"])
    assert result.exit_code == 0, result.output
    assert "wrote a BM25 index of" in result.output  # index build says what it built
    result = runner.invoke(app, ["evaluate", "retrieval", "--index", str(tmp_path / "bm25"),
                                 "--data", str(world / "test.jsonl"), "--k", "1,5", "--out", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    bm25 = json.loads((tmp_path / "b.json").read_text())
    assert 0 <= bm25["gold_recall@1"] <= bm25["gold_recall@5"] <= 1

    encoder = save_tiny_bert(tmp_path / "bert")
    result = runner.invoke(app, ["index", "build", "--passages", str(world / "passages.jsonl"),
                                 "--out", str(tmp_path / "hybrid"), "--kind", "hybrid", "--encoder", str(encoder),
                                 "--tune-on", str(world / "dev.jsonl")])
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "hybrid" / "meta.json").read_text())
    assert meta["kind"] == "hybrid" and 0 <= meta["weight"] <= 1
    result = runner.invoke(app, ["evaluate", "retrieval", "--index", str(tmp_path / "hybrid"),
                                 "--data", str(world / "test.jsonl"), "--k", "1,5", "--encoder", str(encoder),
                                 "--out", str(tmp_path / "h.json")])
    assert result.exit_code == 0, result.output
    # a random-weight dense side cannot pull a tuned hybrid far below BM25 alone
    assert json.loads((tmp_path / "h.json").read_text())["gold_recall@5"] >= bm25["gold_recall@5"] - 0.1


def test_stable_top_k_is_the_head_of_a_full_stable_sort():
    import numpy as np

    from attnrag.retrieval.lexical import stable_top_k

    rng = np.random.default_rng(0)
    for trial in range(200):
        n = int(rng.integers(1, 60))
        scores = rng.integers(0, 5, n).astype(np.float32) * 0.5  # many ties, at the cut too
        if trial % 7 == 0:
            scores[:] = 0.0  # an all-zero row: corpus order
        if trial % 5 == 0:
            scores -= 1.0  # negative scores too (fewer than k positive: the general path)
        k = int(rng.integers(1, n + 1))
        expected = np.lexsort((np.arange(n), -scores))[:k]
        assert stable_top_k(scores, k).tolist() == expected.tolist(), (scores, k)
