"""BiEncoder: pooling, ordering, tie/untie semantics, save/load, and (slow) the real MiniLM."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnrag.data.records import Passage
from attnrag.errors import InputError
from attnrag.retrieval.encoder import CONFIG_NAME, BiEncoder, mean_pool, passage_to_text

TEXTS = [
    "short",
    "a much longer text with many more words than the first one so that padding matters",
    "medium length text here",
    "",
    "another one of a middling sort of length",
]


@pytest.fixture
def enc(tiny_bert_dir) -> BiEncoder:
    return BiEncoder.from_pretrained(tiny_bert_dir, device="cpu")


def test_passage_to_text() -> None:
    assert passage_to_text(Passage("1", "Paris", "Capital of France.")) == "Paris | Capital of France."
    assert passage_to_text(Passage("1", "", "No title.")) == "No title."
    assert passage_to_text("raw") == "raw"


def test_mean_pool_ignores_padding() -> None:
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(hidden, mask), torch.tensor([[2.0, 3.0]]))


def test_encode_matches_unbatched_and_keeps_order(enc: BiEncoder) -> None:
    batched = enc.encode_passages(TEXTS, batch_size=2, progress=False)
    assert enc.dim == 32 and batched.dtype == np.float32 and batched.shape == (len(TEXTS), 32)
    one_by_one = np.stack([enc.encode_passages([t], batch_size=1, progress=False)[0] for t in TEXTS])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    q = enc.encode_queries(TEXTS, batch_size=3)
    assert isinstance(q, torch.Tensor) and q.shape == (len(TEXTS), 32) and not q.requires_grad
    with torch.no_grad():  # the differentiable path gives the same numbers in eval mode
        np.testing.assert_allclose(enc.eval().embed_queries(TEXTS).numpy(), q.numpy(), atol=1e-5)


def test_embed_queries_has_grad_and_encode_restores_mode(enc: BiEncoder) -> None:
    enc.train()
    emb = enc.embed_queries(["what is it?", "who?"])
    assert emb.requires_grad
    emb.sum().backward()
    assert enc.query_encoder.embeddings.word_embeddings.weight.grad is not None
    enc.encode_queries(["x"])
    assert enc.query_encoder.training  # inference temporarily switched to eval, then back


def test_embed_passages_in_length_chunks_equals_one_padded_batch(enc: BiEncoder) -> None:
    """Chunking by token length is a cost optimisation only: same embeddings in input order, and the
    gradient of every passage reaches the (tied) tower."""
    texts = [t * (1 + i % 3) or "x" for i, t in enumerate(TEXTS * 5)]
    enc.eval()
    whole = enc.embed_passages(texts, chunk_size=len(texts))
    chunked = enc.embed_passages(texts, chunk_size=4)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=1e-4)
    grads = []
    for chunk_size in (len(texts), 4):
        enc.zero_grad()
        (enc.embed_passages(texts, chunk_size=chunk_size) * torch.arange(len(texts))[:, None]).sum().backward()
        grads.append(enc.passage_encoder.embeddings.word_embeddings.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], atol=1e-4, rtol=1e-3)


def test_encode_rejects_bare_string(enc: BiEncoder) -> None:
    with pytest.raises(InputError, match="list"):
        enc.encode_queries("not a list")


def test_untie_makes_a_frozen_copy(enc: BiEncoder) -> None:
    assert enc.tied and enc.passage_encoder is enc.query_encoder
    before = enc.encode_passages(TEXTS, progress=False)
    enc.untie()
    assert not enc.tied and enc.passage_frozen
    assert enc.passage_encoder is not enc.query_encoder
    assert all(not p.requires_grad for p in enc.passage_encoder.parameters())
    assert all(p.requires_grad for p in enc.query_encoder.parameters())
    # Train the query tower one step; passages must not move (ATLAS's shared-weight bug).
    enc.train()
    assert not enc.passage_encoder.training
    opt = torch.optim.SGD([p for p in enc.parameters() if p.requires_grad], lr=1.0)
    enc.embed_queries(["a question"]).pow(2).sum().backward()
    opt.step()
    np.testing.assert_array_equal(enc.encode_passages(TEXTS, progress=False), before)
    assert not np.allclose(enc.encode_queries(TEXTS).numpy(), before, atol=1e-4)


@pytest.mark.parametrize("untie", [False, True])
def test_save_load_round_trip(enc: BiEncoder, tmp_path, untie: bool) -> None:
    enc.query_max_length, enc.passage_max_length = 16, 24
    if untie:
        enc.untie()
        with torch.no_grad():  # make the towers differ so a mix-up would show
            enc.query_encoder.embeddings.word_embeddings.weight.add_(0.5)
    enc.save(tmp_path / "enc")
    cfg = json.loads((tmp_path / "enc" / CONFIG_NAME).read_text())
    assert cfg["tied"] is (not untie) and cfg["query_max_length"] == 16
    loaded = BiEncoder.load(tmp_path / "enc", device="cpu")
    assert loaded.tied is enc.tied and loaded.passage_frozen is enc.passage_frozen
    assert (loaded.query_max_length, loaded.passage_max_length) == (16, 24)
    assert loaded.name == str(tmp_path / "enc")
    np.testing.assert_array_equal(
        loaded.encode_passages(TEXTS, progress=False), enc.encode_passages(TEXTS, progress=False)
    )
    np.testing.assert_array_equal(loaded.encode_queries(TEXTS).numpy(), enc.encode_queries(TEXTS).numpy())
    # A saved encoder is also a plain model directory for from_pretrained.
    assert BiEncoder.from_pretrained(tmp_path / "enc", device="cpu").tied is enc.tied


@pytest.mark.slow
def test_real_minilm_end_to_end() -> None:
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    from attnrag.models import resolve_model

    try:
        path = resolve_model("minilm-l6-v2")
    except Exception as exc:  # not provisioned
        pytest.skip(str(exc))
    enc = BiEncoder.from_pretrained("minilm-l6-v2", device="cpu")
    passages = [
        Passage("p1", "Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France."),
        Passage(
            "p2", "Photosynthesis", "Plants convert sunlight, water and carbon dioxide into sugar and oxygen."
        ),
        Passage(
            "p3",
            "Mount Everest",
            "Mount Everest is Earth's highest mountain above sea level, in the Himalayas.",
        ),
    ]
    questions = [
        "Which city is the Eiffel Tower in?",
        "How do plants make sugar from sunlight?",
        "What is the highest mountain on Earth?",
    ]
    p = enc.encode_passages(passages, progress=False)
    q = enc.encode_queries(questions)
    assert (q.numpy() @ p.T).argmax(1).tolist() == [0, 1, 2]
    # The model directory declares cosine (its pipeline ends in Normalize), mean pooling, 256 tokens.
    assert (enc.similarity, enc.pooling, enc.passage_max_length) == ("cosine", "mean", 256)
    # Same numbers as sentence-transformers' own pipeline of that directory (Normalize included) ...
    texts = [passage_to_text(x) for x in passages]
    ref = SentenceTransformer(str(path), device="cpu")
    np.testing.assert_allclose(p, ref.encode(texts, convert_to_numpy=True), atol=1e-5)
    # ... and, with the similarity overridden to dot, as its pipeline without Normalize.
    dot = BiEncoder.from_pretrained("minilm-l6-v2", device="cpu", similarity="dot")
    unnormalised = SentenceTransformer(
        modules=[Transformer(str(path), max_seq_length=256), Pooling(enc.dim, "mean")], device="cpu"
    )
    np.testing.assert_allclose(dot.encode_passages(passages, progress=False),
                               unnormalised.encode(texts, convert_to_numpy=True), atol=1e-5)
