"""Group ``bm25``: attnrag's BM25 search against bm25s's own ``retrieve`` on the same queries, and
attnrag's top-k before (a full stable sort of every passage's score per question) and after (a
partial selection, then a stable sort of the top slice: ``stable_top_k``).

Corpora: TweetQA's 4,318 tweets with its 847 test questions (``../shared/data/tweetqa-open``, when
present), and a generated corpus of 1,000,000 passages (smoke: 20,000) of 30-60 words drawn from a
Zipf-distributed 50,000-word vocabulary, with 1,000 generated 4-8 word questions. Every method gets
the same tokenised queries (attnrag's tokenizer, stemmer and stop words); k = 10.

Methods, timed round-robin in this process (:func:`_bench.time_interleaved`):
    ``attnrag``: ``BM25Index.search`` (tokenise, ``get_scores`` per question, then ``stable_top_k``);
    ``attnrag_full_sort``: the same search with the full ``np.lexsort`` per question (the code before);
    ``bm25s``: the same tokenisation, then ``bm25s.BM25.retrieve(query_tokens, k)`` (its own top-k;
    ties in any order).
Ratios are medians of per-round ratios with a bootstrap interval (:func:`_bench.paired_ratio_interval`).
The two attnrag rankings must be identical (checked: ``same_ranking``); bm25s's may order ties
differently, so its agreement is reported as the share of identical top-10 sets.
"""

from __future__ import annotations

import json
import time

import numpy as np
from _bench import REPO_ROOT, Method, log, paired_ratio_interval, time_interleaved

SHARED = REPO_ROOT.parent / "shared" / "data" / "tweetqa-open"
FULL = {"generated_passages": 1_000_000, "queries": 1000, "vocab": 50_000, "k": 10, "warmup": 1, "repeats": 3,
        "seed": 0}
SMOKE = {**FULL, "generated_passages": 20_000, "queries": 100, "repeats": 2}


def generated_corpus(n: int, n_queries: int, vocab: int, seed: int):
    from attnrag.data.records import Passage

    rng = np.random.default_rng(seed)
    words = [f"w{i}x" for i in range(vocab)]  # letters around the digits: tokens bm25s keeps
    ranks = np.arange(1, vocab + 1)
    p = 1.0 / ranks
    p /= p.sum()
    lengths = rng.integers(30, 61, n)
    draws = rng.choice(vocab, size=int(lengths.sum()), p=p)
    passages, start = [], 0
    for i, length in enumerate(lengths):
        passages.append(Passage(f"g{i}", "", " ".join(words[j] for j in draws[start:start + length])))
        start += length
    questions = [" ".join(words[j] for j in rng.choice(vocab, size=int(rng.integers(4, 9)), p=p))
                 for _ in range(n_queries)]
    return passages, questions


def tweetqa_corpus():
    from attnrag.data.formats import load_corpus_dir

    passages, splits = load_corpus_dir(SHARED)
    return passages, [e.question for e in splits["test"]]


def compare(passages, questions, cfg: dict, label: str) -> dict:
    from attnrag.retrieval import lexical
    from attnrag.retrieval.lexical import BM25Index, tokenize

    partial_top_k = lexical.stable_top_k

    k = cfg["k"]
    t0 = time.perf_counter()
    index = BM25Index.build(passages)
    build_s = time.perf_counter() - t0
    vocab = index.retriever.vocab_dict
    tokens = [[t for t in row if t in vocab] for row in tokenize(questions, index.config)]
    asked = [q for q, t in zip(questions, tokens, strict=True) if t]

    def full_sort_top_k(scores, k):  # the code before: a full stable sort of every passage's score
        return np.lexsort((np.arange(len(scores)), -scores))[:k]

    def bm25s_own():  # the same tokenisation, then bm25s's own top-k
        rows = [[t for t in row if t in vocab] for row in tokenize(asked, index.config)]
        return index.retriever.retrieve(rows, k=k, show_progress=False, return_as="documents").tolist()

    methods = {
        "attnrag": Method(lambda: index.search(asked, k)[1]),
        "attnrag_full_sort": Method(lambda: index.search(asked, k)[1],
                                    setup=lambda: setattr(lexical, "stable_top_k", full_sort_top_k),
                                    teardown=lambda: setattr(lexical, "stable_top_k", partial_top_k)),
        "bm25s": Method(bm25s_own),
    }
    timed = time_interleaved(methods, cfg["warmup"], cfg["repeats"])
    position = {pid: j for j, pid in enumerate(index.passage_ids)}
    ours_rows = [[position[i] for i in row] for row in methods["attnrag"].last]
    bm25s_rows = [list(map(int, row)) for row in methods["bm25s"].last]
    row = {
        "corpus": label, "passages": len(passages), "queries": len(asked), "k": k, "build_s": round(build_s, 2),
        "timings": timed,
        "attnrag_over_bm25s": paired_ratio_interval(timed["attnrag"]["repeats_s"], timed["bm25s"]["repeats_s"]),
        "after_over_before": paired_ratio_interval(timed["attnrag"]["repeats_s"],
                                                   timed["attnrag_full_sort"]["repeats_s"]),
        "same_ranking": methods["attnrag"].last == methods["attnrag_full_sort"].last,
        "same_top_k_set_as_bm25s": round(float(np.mean([set(a) == set(b) for a, b in
                                                       zip(ours_rows, bm25s_rows, strict=True)])), 4),
    }
    log(f"bm25 {label}: attnrag/bm25s {row['attnrag_over_bm25s']['median_ratio']} "
        f"[{row['attnrag_over_bm25s']['low']}, {row['attnrag_over_bm25s']['high']}], after/before "
        f"{row['after_over_before']['median_ratio']}, same ranking {row['same_ranking']}")
    return row


def run(smoke: bool = False) -> dict:
    cfg = SMOKE if smoke else FULL
    rows = []
    if SHARED.is_dir():
        rows.append(compare(*tweetqa_corpus(), cfg, "tweetqa-open"))
    passages, questions = generated_corpus(cfg["generated_passages"], cfg["queries"], cfg["vocab"], cfg["seed"])
    rows.append(compare(passages, questions, cfg, f"generated-{cfg['generated_passages']}"))
    return {"config": cfg, "rows": rows}


if __name__ == "__main__":
    print(json.dumps(run(smoke=True), indent=1)[:3000])
