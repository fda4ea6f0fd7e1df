"""The exported retriever is the same retriever: sentence-transformers reproduces attnrag's embeddings
and rankings offline, for tied and untied towers; an index refuses a search by another encoder."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from attnrag.data.records import Passage
from attnrag.errors import InputError
from attnrag.retrieval.encoder import BiEncoder, passage_to_text
from attnrag.retrieval.index import build_index, retrieve

PASSAGES = [Passage(f"p{i}", title, text) for i, (title, text) in enumerate([
    ("Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France."),
    ("Photosynthesis", "Plants convert sunlight, water and carbon dioxide into sugar and oxygen."),
    ("Mount Everest", "Mount Everest is Earth's highest mountain above sea level, in the Himalayas."),
    ("", "A passage without a title about the river Danube and the city of Vienna."),
    ("Jazz", "Jazz originated in the African-American communities of New Orleans."),
])]
QUESTIONS = ["Which city is the Eiffel Tower in?", "How do plants make sugar?", "highest mountain",
             "Where did jazz start?"]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _untied(tiny_bert_dir, similarity: str) -> BiEncoder:
    enc = BiEncoder.from_pretrained(tiny_bert_dir, device="cpu", similarity=similarity).untie(freeze=True)
    with torch.no_grad():  # a "trained" query tower: different weights from the passage tower
        for p in enc.query_encoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return enc


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("tied", [True, False])
def test_export_reproduces_embeddings_and_ranking(tiny_bert_dir, tmp_path, offline, similarity, tied) -> None:
    st = pytest.importorskip("sentence_transformers")
    from attnrag.retrieval.export import export_sentence_transformers

    enc = (BiEncoder.from_pretrained(tiny_bert_dir, device="cpu", similarity=similarity) if tied
           else _untied(tiny_bert_dir, similarity))
    out = export_sentence_transformers(enc, tmp_path / "exported", {"base_model": "tiny-bert"})
    model = st.SentenceTransformer(str(out), device="cpu", local_files_only=True)
    texts = [passage_to_text(p) for p in PASSAGES]
    ours_q, ours_p = enc.encode_queries(QUESTIONS).numpy(), enc.encode_passages(PASSAGES, progress=False)
    np.testing.assert_allclose(model.encode_query(QUESTIONS), ours_q, atol=1e-5)
    np.testing.assert_allclose(model.encode_document(texts), ours_p, atol=1e-5)
    if not tied:  # the two towers really are different, and each route uses its own
        assert not np.allclose(model.encode_query(texts), model.encode_document(texts), atol=1e-3)
    # The same top-k through sentence-transformers' own search as through attnrag's retrieve.
    index = build_index(PASSAGES, enc, progress=False)
    _, ours = retrieve(index, {p.id: p for p in PASSAGES}, enc, QUESTIONS, k=3)
    hits = st.util.semantic_search(model.encode_query(QUESTIONS, convert_to_tensor=True),
                                   model.encode_document(texts, convert_to_tensor=True), top_k=3,
                                   score_function=st.util.cos_sim if similarity == "cosine" else st.util.dot_score)
    assert [[PASSAGES[h["corpus_id"]].id for h in row] for row in hits] == [[p.id for p in row] for row in ours]
    card = (out / "README.md").read_text()
    assert "tiny-bert" in card and similarity in card.lower()
    # attnrag reads its own export back: both towers, pooling and similarity.
    again = BiEncoder.from_pretrained(out, device="cpu")
    assert (again.similarity, again.pooling, again.tied) == (similarity, "mean", tied)
    np.testing.assert_allclose(again.encode_queries(QUESTIONS).numpy(), ours_q, atol=1e-5)
    np.testing.assert_allclose(again.encode_passages(PASSAGES, progress=False), ours_p, atol=1e-5)


def test_index_refuses_a_different_encoder(tiny_bert_dir, tmp_path) -> None:
    base = BiEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    index = build_index(PASSAGES, base, progress=False)
    index.save(tmp_path / "index")
    from attnrag.retrieval.index import PassageIndex

    loaded = PassageIndex.load(tmp_path / "index")
    assert loaded.encoder_info["fingerprint"] == base.passage_fingerprint()
    retrieve(loaded, loaded.passages, base, QUESTIONS, k=2)  # the encoder that built it: fine
    other = _untied(tiny_bert_dir, "dot")  # same dimension, query tower differs, passage tower the same
    retrieve(loaded, loaded.passages, other, QUESTIONS, k=2)  # query-side training keeps the index valid
    with torch.no_grad():
        for p in other.passage_encoder.parameters():
            p.mul_(1.01)
    with pytest.raises(InputError, match="fingerprint"):
        retrieve(loaded, loaded.passages, other, QUESTIONS, k=2)
    cosine = BiEncoder.from_pretrained(tiny_bert_dir, device="cpu", similarity="cosine")
    with pytest.raises(InputError, match="similarity"):
        retrieve(loaded, loaded.passages, cosine, QUESTIONS, k=2)


def test_api_export_of_a_saved_retriever_and_index_build_from_it(tiny_bert_dir, tmp_path, offline) -> None:
    pytest.importorskip("sentence_transformers")
    from attnrag import api
    from attnrag.data.formats import write_passages

    enc = _untied(tiny_bert_dir, "cosine")
    enc.save(tmp_path / "retriever")
    out = api.export_retriever(tmp_path / "retriever", tmp_path / "exported",
                               metrics={"test": {"n": 4, "gold_recall@1": 0.5}})
    card = (out / "README.md").read_text()
    assert "| test | 4 | gold_recall@1 | 0.500 |" in card and "commit" in card
    write_passages(tmp_path / "passages.jsonl", PASSAGES)
    index_dir = api.build_index(tmp_path / "passages.jsonl", tmp_path / "index", encoder=str(out), progress=False)
    from attnrag.retrieval.index import PassageIndex

    assert PassageIndex.load(index_dir).encoder_info["fingerprint"] == enc.passage_fingerprint()


@pytest.mark.parametrize("tied", [True, False])
def test_export_carries_the_hybrid_and_ranks_as_attnrag_does(tiny_bert_dir, tmp_path, offline, tied) -> None:
    """--bm25: the export holds a BM25 index and the weight chosen on dev; its loader ranks exactly as
    attnrag's HybridIndex of the same retriever does."""
    pytest.importorskip("sentence_transformers")
    import json

    from attnrag import api
    from attnrag.data.formats import write_passages
    from attnrag.data.records import QAExample
    from attnrag.evaluate.retrieval import tune_hybrid_weight
    from attnrag.retrieval.export import load_exported_hybrid
    from attnrag.retrieval.hybrid import HybridIndex
    from attnrag.retrieval.index import build_index, search_questions
    from attnrag.retrieval.lexical import BM25Index
    from attnrag.retrieval.store import load_searcher

    enc = BiEncoder.from_pretrained(tiny_bert_dir, device="cpu") if tied else _untied(tiny_bert_dir, "cosine")
    enc.save(tmp_path / "retriever")
    write_passages(tmp_path / "passages.jsonl", PASSAGES)
    dev = [QAExample(f"d{i}", q, ["x"], [PASSAGES[i % len(PASSAGES)].id]) for i, q in enumerate(QUESTIONS)]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps({"id": e.id, "question": e.question, "answers": e.answers,
                                                            "gold_passage_ids": e.gold_passage_ids}) + "\n"
                                                for e in dev))
    out = api.export_retriever(tmp_path / "retriever", tmp_path / "exported", bm25=tmp_path / "passages.jsonl",
                               tune_on=tmp_path / "dev.jsonl", depth=3)
    meta = json.loads((out / "meta.json").read_text())  # the one hybrid format, the model as its dense side
    assert meta["kind"] == "hybrid" and meta["dense"] == {"format": "sentence-transformers", "path": "."}
    lexical = BM25Index.build(PASSAGES)
    expected = tune_hybrid_weight(lexical, build_index(PASSAGES, enc, progress=False), enc, dev, depth=3)
    assert meta["weight"] == expected["weight"] and "Hybrid" in (out / "README.md").read_text()
    hybrid = load_exported_hybrid(out)
    _, got = hybrid.search(QUESTIONS, 2)
    reference = HybridIndex(lexical, build_index(PASSAGES, enc, progress=False), "convex", meta["weight"], 3)
    _, want = search_questions(reference, enc, QUESTIONS, 2)
    assert got == want
    searcher, passages = load_searcher(out)  # the one loader reads it too
    assert searcher.search(QUESTIONS, 2)[1] == want and set(passages) == {p.id for p in PASSAGES}
    with pytest.raises(InputError, match="sentence-transformers model"):
        HybridIndex.load(out)
    api.retrieve(out, tmp_path / "dev.jsonl", 2, tmp_path / "retrieved.jsonl")  # `attnrag retrieve --index <export>`
    rows = [json.loads(line) for line in (tmp_path / "retrieved.jsonl").read_text().splitlines()]
    assert [r["passage_ids"] for r in rows] == want
    # the model card's snippet, run where attnrag cannot be imported and the hub is offline, ranks the same
    card = (out / "README.md").read_text()
    snippet = card.split("```python\n")[-1].split("```")[0].replace("path/to/this/directory", str(out))
    snippet = snippet.replace('print(search("your question"))', "")
    snippet += f"\nprint(json.dumps([[pid for pid, _ in search(q, 2)] for q in {QUESTIONS!r}]))\n"
    blocked = "import sys; sys.modules['attnrag'] = None\n"  # any import of attnrag fails
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run([sys.executable, "-c", blocked + snippet], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    one_at_a_time = [searcher.search([q], 2)[1][0] for q in QUESTIONS]  # as the snippet encodes them (no padding)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == one_at_a_time
    with pytest.raises(InputError, match="exactly one"):
        api.export_retriever(tmp_path / "retriever", tmp_path / "x", bm25=tmp_path / "passages.jsonl")
