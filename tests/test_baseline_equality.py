"""attnrag's zero-shot retrieval is the retriever as its users run it: sentence-transformers' own
``encode`` + ``util.semantic_search`` on a slice of real SQuAD, same top-k ids, scores within 1e-5.

This is the baseline every distillation result is compared with; a handicapped baseline (the
retriever scored with a similarity it was not trained for) would inflate every gain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "squad-open-dev"
N_PASSAGES, N_QUESTIONS, K = 240, 80, 10


@pytest.mark.slow
def test_zero_shot_retrieval_equals_sentence_transformers() -> None:
    if not (SQUAD / "passages.jsonl").is_file():
        pytest.skip(f"real data not found at {SQUAD}")
    st = pytest.importorskip("sentence_transformers")
    from attnrag.data.formats import load_passages, load_qa
    from attnrag.models import resolve_model
    from attnrag.retrieval.encoder import BiEncoder, passage_to_text
    from attnrag.retrieval.index import build_index

    try:
        path = resolve_model("minilm-l6-v2")
    except Exception as exc:  # not provisioned
        pytest.skip(str(exc))
    passages = load_passages(SQUAD / "passages.jsonl")[:N_PASSAGES]
    kept = {p.id for p in passages}
    questions = [e for e in load_qa(SQUAD / "test.jsonl") + load_qa(SQUAD / "train.jsonl")
                 if set(e.gold_passage_ids) & kept][:N_QUESTIONS]
    assert len(questions) == N_QUESTIONS

    encoder = BiEncoder.from_pretrained("minilm-l6-v2", device="cpu")
    index = build_index(passages, encoder, progress=False)
    ours_scores, ours_ids = index.search(encoder.encode_queries([e.question for e in questions]), K)

    model = st.SentenceTransformer(str(path), device="cpu")
    corpus = model.encode([passage_to_text(p) for p in passages], convert_to_tensor=True)
    queries = model.encode([e.question for e in questions], convert_to_tensor=True)
    hits = st.util.semantic_search(queries, corpus, top_k=K)
    ref_ids = [[passages[h["corpus_id"]].id for h in row] for row in hits]
    ref_scores = np.array([[h["score"] for h in row] for row in hits])

    np.testing.assert_allclose(ours_scores, ref_scores, atol=1e-5)
    # Ids must agree except where two passages tie within float noise (then either order is right).
    for ours, ref, scores in zip(ours_ids, ref_ids, ref_scores, strict=True):
        for rank, (a, b) in enumerate(zip(ours, ref, strict=True)):
            if a != b:
                assert any(abs(scores[rank] - scores[j]) < 1e-5 for j in range(K) if j != rank), (ours, ref)
    assert sum(a == b for o, r in zip(ours_ids, ref_ids, strict=True) for a, b in zip(o, r, strict=True)) \
        >= 0.99 * N_QUESTIONS * K
