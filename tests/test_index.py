"""PassageIndex: id mapping, kinds agree on easy data, k errors, atomic save/load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from attnrag.data.records import Passage
from attnrag.errors import InputError
from attnrag.retrieval import index as index_mod
from attnrag.retrieval.encoder import BiEncoder
from attnrag.retrieval.index import PassageIndex, build_index, retrieve
from attnrag.retrieval.store import load_indexed_corpus


def easy_set(n: int = 400, d: int = 16, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Unit vectors in well-separated directions; queries are small perturbations of some of them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[:20] + 0.01 * rng.normal(size=(20, d)).astype(np.float32)
    return x, [f"doc{i}" for i in range(n)], q


def test_flat_maps_ids_back() -> None:
    x, ids, q = easy_set()
    idx = PassageIndex.build(x, ids)
    scores, got = idx.search(q, 3)
    assert scores.shape == (20, 3) and len(idx) == 400 and idx.dim == 16
    assert [row[0] for row in got] == ids[:20]
    assert np.all(np.diff(scores, axis=1) <= 0)
    np.testing.assert_allclose(scores[:, 0], np.sum(q * x[:20], axis=1), rtol=1e-5)
    np.testing.assert_array_equal(idx.reconstruct("doc7"), x[7])


@pytest.mark.parametrize(
    ("kind", "params"), [("ivf", {"nlist": 8, "nprobe": 8}), ("hnsw", {"M": 16, "efSearch": 64})]
)
def test_approximate_kinds_agree_with_flat(kind: str, params: dict) -> None:
    x, ids, q = easy_set()
    _, flat_ids = PassageIndex.build(x, ids).search(q, 5)
    _, got = PassageIndex.build(x, ids, kind=kind, **params).search(q, 5)
    assert [r[0] for r in got] == [r[0] for r in flat_ids]
    assert np.mean([len(set(a) & set(b)) / 5 for a, b in zip(got, flat_ids)]) >= 0.9


@pytest.mark.parametrize("k", [0, -1, 401, 2.5])
def test_bad_k(k) -> None:
    x, ids, q = easy_set()
    with pytest.raises(InputError, match="between 1 and the number of indexed passages"):
        PassageIndex.build(x, ids).search(q, k)


def test_bad_build_inputs() -> None:
    x, ids, q = easy_set()
    with pytest.raises(InputError, match="must match"):
        PassageIndex.build(x, ids[:-1])
    with pytest.raises(InputError, match="duplicate passage id 'doc0'"):
        PassageIndex.build(x, ["doc0"] * len(ids))
    with pytest.raises(InputError, match="unknown index kind"):
        PassageIndex.build(x, ids, kind="lsh")
    with pytest.raises(InputError, match="unknown parameter"):
        PassageIndex.build(x, ids, kind="flat", nlist=4)
    with pytest.raises(InputError, match="dimension"):
        PassageIndex.build(x, ids).search(q[:, :8], 1)


@pytest.mark.parametrize(
    ("kind", "params"), [("flat", {}), ("ivf", {"nlist": 8, "nprobe": 3}), ("hnsw", {"ef_search": 40})]
)
def test_save_load_round_trip(tmp_path, kind: str, params: dict) -> None:
    x, ids, q = easy_set()
    idx = PassageIndex.build(x, ids, kind=kind, encoder_name="tiny", **params)
    idx.save(tmp_path / "idx")
    loaded = PassageIndex.load(tmp_path / "idx")
    assert (loaded.kind, loaded.encoder_name, loaded.params) == (kind, "tiny", idx.params)
    s1, i1 = idx.search(q, 10)
    s2, i2 = loaded.search(q, 10)
    np.testing.assert_array_equal(s1, s2)
    assert i1 == i2
    np.testing.assert_array_equal(loaded.reconstruct("doc3"), x[3])


def test_failed_save_leaves_no_partial_dir(tmp_path, monkeypatch) -> None:
    x, ids, q = easy_set()
    good = PassageIndex.build(x[:50], ids[:50])
    good.save(tmp_path / "idx")

    def boom(obj, path):
        raise RuntimeError("killed mid-save")

    monkeypatch.setattr(index_mod, "_write", boom)
    # A fresh target: nothing appears. An existing target: the old index survives intact.
    with pytest.raises(RuntimeError):
        PassageIndex.build(x, ids).save(tmp_path / "fresh")
    with pytest.raises(RuntimeError):
        PassageIndex.build(x, ids).save(tmp_path / "idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    assert len(PassageIndex.load(tmp_path / "idx")) == 50


def test_build_index_keeps_passages(tiny_bert_dir, tmp_path) -> None:
    enc = BiEncoder.from_pretrained(tiny_bert_dir, device="cpu")
    passages = [
        Passage(f"p{i}", f"Title {i}", f"text number {i} about topic {i * 7}", "s" if i % 2 else None)
        for i in range(12)
    ]
    idx = build_index(passages, enc, progress=False)
    idx.save(tmp_path / "corpus")
    loaded, by_id = load_indexed_corpus(tmp_path / "corpus")
    assert by_id == {p.id: p for p in passages}
    _, got = retrieve(loaded, by_id, enc, ["text number 3", "Title 5"], k=4)
    assert all(len(row) == 4 and all(isinstance(p, Passage) for p in row) for row in got)
    # Scores are the dot products the encoder gives, and ids are the right passages.
    q = enc.encode_queries(["text number 3"]).numpy()
    full = q @ enc.encode_passages(passages, progress=False).T
    scores, ids = loaded.search(q, 12)
    np.testing.assert_allclose(scores[0], np.sort(full[0])[::-1], rtol=1e-5, atol=1e-5)
    assert ids[0][0] == passages[int(full[0].argmax())].id


def test_load_without_passages_errors(tmp_path) -> None:
    x, ids, _ = easy_set(20)
    PassageIndex.build(x, ids).save(tmp_path / "bare")
    with pytest.raises(InputError, match="passages.jsonl"):
        load_indexed_corpus(tmp_path / "bare")
    with pytest.raises(InputError, match="missing"):
        PassageIndex.load(tmp_path)
