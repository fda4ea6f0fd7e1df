"""Measure what a Wikipedia-sized corpus (21M passages) costs attnrag, on this machine, at small scale.

Measured here, then extrapolated linearly (each extrapolation is printed with its factor).
Throughputs come from the process's CPU time, not wall time: this machine is shared, so the wall
time also counts waiting for a core (both are reported). Extrapolations are in CPU-core seconds.

1. **Encoding** (index build and every refresh): the real MiniLM-L6 passage tower
   (``BiEncoder.encode_passages``, the code the trainer runs) on ``--passages`` DPR-length passages
   (~100 words, the length of the 21M-passage Wikipedia split). The synthetic world's passages are
   ~25 words, so each benchmark passage joins four consecutive ones. Throughput in passages and
   tokens per CPU-second at ``--threads`` threads; 21M passages / throughput = core-seconds for one
   full encoding, divided by W for W ranks each encoding its shard.
2. **Flat search** over 100k synthetic float32 vectors (dim 384 and 768), a training step's batch
   of queries (64) and an evaluation batch (1024): exact inner-product search scans every vector,
   so its time grows linearly with the number of vectors; x210 for 21M in one process, x210/W per
   rank for W shards. Also the fp16 scalar-quantised flat index (half the memory).
3. **Host memory per passage** of the corpus the trainer keeps in every rank (``Passage`` objects
   and the id -> passage dict), x21M.

IVF-PQ is not measured: attnrag's index kinds are flat, IVF-Flat and HNSW, and training a 64-byte
product quantiser on this shared 2-core machine takes minutes for 20k vectors; docs/scale.md gives
its size by arithmetic.

Usage::

    nice -n 19 .venv/bin/python benchmarks/scale_sim.py [--passages 2000] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import tracemalloc

import faiss
import numpy as np
import torch

N_WIKI = 21_000_000
N_SIM = 100_000
GB = 1e9


def timed(fn, repeat: int = 1) -> tuple[float, float, object]:
    """``(wall seconds, CPU seconds, result)``, best of ``repeat``.

    On a shared machine the wall time includes waiting for a core; the process CPU time (all of this
    process's threads) does not, so throughputs are extrapolated from CPU time and the wall time is
    reported beside it.
    """
    best_wall, best_cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, out


def real_length_passages(n: int):
    from attnrag.data.records import Passage
    from attnrag.data.synth import generate_world

    world = generate_world(seed=0, size="default")
    pool = list(world.passages.values()) if isinstance(world.passages, dict) else list(world.passages)
    out = []
    for i in range(n):
        parts = [pool[(4 * i + j) % len(pool)] for j in range(4)]
        out.append(Passage(f"bench-{i}", parts[0].title, " ".join(p.text for p in parts)))
    return out


def bench_encoding(n: int, batch_size: int) -> dict:
    from attnrag.retrieval.encoder import BiEncoder, passage_to_text

    passages = real_length_passages(n)
    enc = BiEncoder.from_pretrained("minilm-l6-v2", device="cpu")
    tok = enc.tokenizer([passage_to_text(p) for p in passages], truncation=True,
                        max_length=enc.passage_max_length)["input_ids"]
    full = enc.tokenizer([passage_to_text(p) for p in passages])["input_ids"]
    tokens = sum(len(t) for t in tok)
    enc.encode_passages(passages[:batch_size], batch_size=batch_size, progress=False)  # warm-up
    wall, seconds, emb = timed(lambda: enc.encode_passages(passages, batch_size=batch_size, progress=False))
    per_s = n / seconds
    return {
        "model": "minilm-l6-v2 (6 layers, dim 384)",
        "passages": n,
        "words_per_passage": float(np.mean([len(p.text.split()) + len(p.title.split()) for p in passages])),
        "tokens_per_passage_untruncated": float(np.mean([len(t) for t in full])),
        "tokens_per_passage": tokens / n,
        "max_length": enc.passage_max_length,
        "wall_seconds": wall,
        "cpu_seconds": seconds,
        "passages_per_cpu_s": per_s,
        "tokens_per_cpu_s": tokens / seconds,
        "dim": int(emb.shape[1]),
        "extrapolated_21M_cpu_hours": N_WIKI / per_s / 3600,
    }


def bench_flat(dim: int, rng: np.random.Generator) -> dict:
    x = rng.standard_normal((N_SIM, dim), dtype=np.float32)
    out: dict = {"dim": dim, "vectors": N_SIM}
    for name, make in (("fp32", lambda: faiss.IndexFlatIP(dim)),
                       ("fp16", lambda: faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16,
                                                                   faiss.METRIC_INNER_PRODUCT))):
        index = make()
        if not index.is_trained:
            index.train(x[:1000])
        index.add(x)
        row = {"bytes_per_vector": index.sa_code_size() if name == "fp16" else 4 * dim}
        for nq in (64, 1024):
            q = rng.standard_normal((nq, dim), dtype=np.float32)
            wall, seconds, _ = timed(lambda q=q, index=index: index.search(q, 100), repeat=3)
            row[f"q{nq}_wall_seconds"] = wall
            row[f"q{nq}_cpu_seconds"] = seconds
            row[f"q{nq}_cpu_ms_per_query"] = 1000 * seconds / nq
            row[f"q{nq}_extrapolated_21M_cpu_seconds"] = seconds * N_WIKI / N_SIM
        out[name] = row
    return out


def bench_passage_memory(n: int) -> dict:
    from attnrag.data.records import Passage

    raw = [(p.title.encode(), p.text.encode()) for p in real_length_passages(n)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    # what loading the corpus leaves in memory: fresh strings, Passage objects, the id -> Passage dict
    kept = [Passage(f"wiki-{i:08d}", t.decode(), x.decode()) for i, (t, x) in enumerate(raw)]
    by_id = {p.id: p for p in kept}
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    text_bytes = sum(len(t) + len(x) for t, x in raw) / n
    per = (after - before) / n
    del by_id
    return {"passages": n, "utf8_bytes_per_passage": text_bytes, "python_bytes_per_passage": per,
            "extrapolated_21M_GB_per_rank": per * N_WIKI / GB}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passages", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # keep the tokenizer on this thread budget
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    result: dict = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(),
                                "threads": args.threads, "load_average_at_start": load_average(),
                                "torch": torch.__version__, "faiss": faiss.__version__}}
    steps = [("encoding", lambda: bench_encoding(args.passages, args.batch_size)),
             ("flat_384", lambda: bench_flat(384, rng)),
             ("flat_768", lambda: bench_flat(768, rng)),
             ("passage_memory", lambda: bench_passage_memory(args.passages))]
    for name, fn in steps:
        start = time.perf_counter()
        result[name] = fn()
        result[name]["load_average_after"] = load_average()
        took = time.perf_counter() - start
        print(f"[{name}: {took:.1f}s] {json.dumps(result[name], indent=1)}", flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
