"""Group ``index``: flat vs IVF vs HNSW (attnrag's ``PassageIndex``) at 10k and 100k passages, and on a
real corpus (every passage of the real sets in ../shared/data, ~14k, embedded by all-MiniLM-L6-v2 and
queried with their test questions), where an approximate index misses more than on the synthetic
clusters (there every index type had recall@10 1.000).

Data: synthetic unit vectors of dimension 384 (MiniLM's) with cluster structure, so that an IVF
coarse quantiser has something to find: ``n / 100`` random unit centres, each point a centre plus
Gaussian noise of about the centre's norm, normalised. Queries (1,000) are drawn the same way from
the same centres. Ground truth is the flat (exact) index; recall@10 of an approximate index is the
mean fraction of the exact top 10 that it returns.

Parameters: IVF ``nlist = 4 * sqrt(n)`` (given explicitly, so attnrag's cap of n/39 does not apply),
``nprobe`` 8 and 32; HNSW ``M = 32``, ``efConstruction = 200`` (attnrag's default), ``efSearch`` 64
and 128. Build time is one build per index; search latency is the median of repeats of the whole
1,000-query batch (k = 10) through ``PassageIndex.search``, all in this process, interleaved.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
from _bench import REPO_ROOT, Method, apply_threads, log, machine_info, ratio, time_interleaved

FULL = {"sizes": [10_000, 100_000], "dim": 384, "queries": 1000, "k": 10, "points_per_cluster": 100,
        "noise": 0.05, "nprobe": [8, 32], "ef_search": [64, 128], "M": 32, "ef_construction": 200,
        "warmup": 1, "repeats": 5, "seed": 0}
SMOKE = {**FULL, "sizes": [2000], "queries": 100, "repeats": 2}


def clustered_unit_vectors(n: int, n_queries: int, dim: int, per_cluster: int, noise: float,
                           seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` database and ``n_queries`` query vectors around ``n / per_cluster`` random unit centres."""
    rng = np.random.default_rng(seed)
    n_centres = max(1, n // per_cluster)
    centres = rng.standard_normal((n_centres, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def draw(m: int) -> np.ndarray:
        x = centres[rng.integers(0, n_centres, m)] + noise * rng.standard_normal((m, dim)).astype(np.float32)
        return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True), dtype=np.float32)

    return draw(n), draw(n_queries)


def recall_at_k(approx: list[list[str]], exact: list[list[str]], k: int) -> float:
    return float(np.mean([len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approx, exact, strict=True)]))


def compare_indexes(x: np.ndarray, ids: list[str], q: np.ndarray, cfg: dict, nlist: int, label: str) -> list[dict]:
    """Build flat / IVF / HNSW over ``x``, search ``q`` with every search setting, interleaved; one row each."""
    from attnrag.retrieval.index import PassageIndex

    k = cfg["k"]
    builds: dict[str, tuple[PassageIndex, float]] = {}
    specs = {
        "flat": {},
        "ivf": {"nlist": nlist, "nprobe": cfg["nprobe"][0]},
        "hnsw": {"M": cfg["M"], "ef_construction": cfg["ef_construction"],
                 "ef_search": cfg["ef_search"][0]},
    }
    for kind, params in specs.items():
        log(f"index: {label} building {kind} {params}")
        t0 = time.perf_counter()
        builds[kind] = (PassageIndex.build(x, ids, kind, **params), time.perf_counter() - t0)

    flat = builds["flat"][0]
    _, exact = flat.search(q, k)
    # One entry per (index, search setting); each setting gets its own PassageIndex view of the same
    # faiss index, re-applying its search parameter before every call (untimed setup).
    variants: dict[str, tuple[str, dict]] = {"flat": ("flat", {})}
    for p in cfg["nprobe"]:
        variants[f"ivf_nprobe{p}"] = ("ivf", {"nprobe": p})
    for ef in cfg["ef_search"]:
        variants[f"hnsw_ef{ef}"] = ("hnsw", {"ef_search": ef})
    methods = {}
    for name, (kind, params) in variants.items():
        index = builds[kind][0]
        methods[name] = Method(run=lambda index=index, q=q: index.search(q, k),
                               setup=lambda index=index, params=params: index.set_search_params(**params))
    log(f"index: {label} searching {len(q)} queries x {cfg['repeats']} repeats, {', '.join(variants)}")
    timing = time_interleaved(methods, cfg["warmup"], cfg["repeats"])
    rows = []
    for name, (kind, params) in variants.items():
        _, got = methods[name].last
        t = timing[name]
        rows.append({
            "index": name, "kind": kind, "params": {**builds[kind][0].params, **params},
            "build_s": round(builds[kind][1], 4),
            "search_batch": t,
            "ms_per_query": round(1000 * t["median_s"] / len(q), 5),
            "queries_per_s": round(len(q) / t["median_s"], 1),
            f"recall@{k}_vs_flat": recall_at_k(got, exact, k),
            "search_speedup_vs_flat": ratio(timing["flat"]["median_s"], t["median_s"], 2),
        })
    return rows


SHARED = REPO_ROOT.parent / "shared" / "data"
REAL_SETS = ("covidqa-open", "tweetqa-open", "nq-oracle-dev", "squad-open-dev")
REAL_FULL = {"k": 10, "nprobe": [1, 4, 16], "ef_search": [16, 64], "M": 32, "ef_construction": 200,
             "warmup": 1, "repeats": 5, "max_queries": None, "max_passages": None}
REAL_SMOKE = {**REAL_FULL, "repeats": 2, "max_queries": 50, "max_passages": 800}


def real_corpus(max_passages: int | None, max_queries: int | None) -> tuple[list, list[str]]:
    """Every passage of the real sets in ../shared/data (plus its 1,000 Wikipedia passages) and their
    test questions: the passages users' corpora look like, where an approximate index can miss."""
    from attnrag.data.formats import load_corpus_dir, load_passages

    passages, questions = [], []
    for name in REAL_SETS:
        corpus, splits = load_corpus_dir(SHARED / name)
        passages += list(corpus)
        questions += [e.question for e in splits.get("test", [])]
    wiki = SHARED / "wiki-sample" / "flashrag-wiki18-100w-sample.jsonl"
    if wiki.is_file():
        passages += list(load_passages(wiki))
    seen, unique = set(), []
    for p in passages:  # ids are unique within a set; keep the first across sets
        key = (p.title, p.text)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique[:max_passages] if max_passages else unique, questions[:max_queries] if max_queries else questions


def run_real(smoke: bool = False) -> dict | None:
    """The same comparison on MiniLM (cosine) embeddings of the real passages and test questions."""
    import faiss

    from attnrag.retrieval.encoder import BiEncoder

    if not SHARED.is_dir():
        log(f"index: {SHARED} is absent; skipping the real-corpus comparison")
        return None
    cfg = REAL_SMOKE if smoke else REAL_FULL
    passages, questions = real_corpus(cfg["max_passages"], cfg["max_queries"])
    encoder = BiEncoder.from_pretrained("minilm-l6-v2", device="cpu")
    log(f"index: encoding {len(passages)} real passages and {len(questions)} questions")
    t0 = time.perf_counter()
    x = encoder.encode_passages(passages, progress=False)
    q = encoder.encode_queries(questions)
    encode_s = time.perf_counter() - t0
    x, q = np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(q, dtype=np.float32)
    nlist = int(4 * math.sqrt(len(passages)))
    rows = compare_indexes(x, [str(i) for i in range(len(passages))], q, cfg, nlist, label="real")
    return {"description": "PassageIndex flat/IVF/HNSW on all-MiniLM-L6-v2 (cosine) embeddings of every "
                           f"passage of {', '.join(REAL_SETS)} and wiki-sample, queried with their test "
                           "questions; recall@10 vs flat",
            "n": len(passages), "queries": len(questions), "nlist": nlist, "encode_s": round(encode_s, 1),
            "config": {**cfg, "faiss_threads": faiss.omp_get_max_threads()}, "rows": rows}


def run(smoke: bool = False) -> dict:
    import faiss

    cfg = SMOKE if smoke else FULL
    results = []
    for n in cfg["sizes"]:
        x, q = clustered_unit_vectors(n, cfg["queries"], cfg["dim"], cfg["points_per_cluster"], cfg["noise"],
                                      cfg["seed"])
        ids = [str(i) for i in range(n)]
        nlist = int(4 * math.sqrt(n))
        rows = compare_indexes(x, ids, q, cfg, nlist, label=f"n={n}")
        results.append({"n": n, "nlist": nlist, "clusters": max(1, n // cfg["points_per_cluster"]),
                        "points_per_list": round(n / nlist, 1), "rows": rows})
    return {
        "description": "PassageIndex flat/IVF/HNSW on clustered synthetic unit vectors; recall@10 vs flat",
        "config": {**cfg, "faiss_threads": faiss.omp_get_max_threads()},
        "sizes": results,
        "real": run_real(smoke),
        "machine": machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    apply_threads()
    print(json.dumps(run(smoke=args.smoke), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
