"""Group ``encoding``: passage-encoding throughput of attnrag's BiEncoder vs sentence-transformers.

Both encode the same passages of the synthetic world (``"{title} | {text}"``, the text the passage
tower sees) with the same MiniLM weights, batch size 64 and the same maximum length (128 tokens,
BiEncoder's ``passage_max_length`` default; sentence-transformers' ``max_seq_length`` is set to it
from the model's 256; no synthetic passage is that long, so both see every token). Timing is
interleaved, median after warm-up; texts/s = passages / median seconds. The embeddings are also
compared (after L2 normalisation, since the sentence-transformers pipeline ends with Normalize).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from _bench import (
    Method,
    apply_threads,
    log,
    machine_info,
    quiet_transformers,
    ratio,
    time_interleaved,
)

RETRIEVER = "minilm-l6-v2"
#: warm-up: each encoder first encodes ``warmup_passages`` texts, then ``warmup_rounds`` untimed full rounds.
FULL = {"passages": 2000, "world": "default", "batch_size": 64, "max_length": 128, "warmup_passages": 256,
        "warmup_rounds": 0, "repeats": 5}
SMOKE = {"passages": 128, "world": "small", "batch_size": 64, "max_length": 128, "warmup_passages": 64,
         "warmup_rounds": 0, "repeats": 2}


def passage_texts(n: int, size: str) -> list[str]:
    from attnrag.data.synth import generate_world
    from attnrag.retrieval.encoder import passage_to_text

    passages = generate_world(seed=0, size=size).passages
    if len(passages) < n:
        raise RuntimeError(f"the '{size}' world has {len(passages)} passages, {n} wanted")
    return [passage_to_text(p) for p in passages[:n]]


def run(smoke: bool = False) -> dict:
    cfg = SMOKE if smoke else FULL
    quiet_transformers()
    from sentence_transformers import SentenceTransformer

    from attnrag.models import resolve_model
    from attnrag.retrieval.encoder import BiEncoder

    texts = passage_texts(cfg["passages"], cfg["world"])
    warm = texts[: cfg["warmup_passages"]]
    bs, max_len = cfg["batch_size"], cfg["max_length"]
    ours = BiEncoder.from_pretrained(RETRIEVER, device="cpu")
    ours.passage_max_length = max_len
    st = SentenceTransformer(str(resolve_model(RETRIEVER)), device="cpu")
    st_default_max = int(st.max_seq_length)
    st.max_seq_length = max_len
    token_lengths = [len(ids) for ids in ours.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def enc_ours(items):
        return ours.encode_passages(items, batch_size=bs, max_length=max_len, progress=False)

    def enc_st(items):
        return st.encode(items, batch_size=bs, convert_to_numpy=True, show_progress_bar=False)

    # Warm-up on a subset (untimed), then the timed, interleaved repeats on all passages.
    enc_ours(warm), enc_st(warm)
    log(f"encoding: {len(texts)} passages x {cfg['repeats']} repeats, attnrag vs sentence-transformers")
    methods = {"attnrag": Method(lambda: enc_ours(texts)),
               "sentence_transformers": Method(lambda: enc_st(texts))}
    timing = time_interleaved(methods, cfg["warmup_rounds"], cfg["repeats"])
    a = methods["attnrag"].last
    b = methods["sentence_transformers"].last
    a_unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    b_unit = b / np.linalg.norm(b, axis=1, keepdims=True)
    n = len(texts)
    for name in timing:
        timing[name]["texts_per_s"] = round(n / timing[name]["median_s"], 1)
    return {
        "description": "BiEncoder.encode_passages vs SentenceTransformer.encode, same passages, batch size "
                       "and max length, interleaved repeats in one process",
        "config": {**cfg, "retriever": RETRIEVER, "st_default_max_seq_length": st_default_max,
                   "device": "cpu", "torch_threads": torch.get_num_threads()},
        "passages": n,
        "tokens": {"mean": round(float(np.mean(token_lengths)), 1), "max": int(max(token_lengths)),
                   "over_max_length": int(sum(t > max_len for t in token_lengths))},
        "time": timing,
        "throughput_attnrag_over_st": ratio(timing["attnrag"]["texts_per_s"],
                                            timing["sentence_transformers"]["texts_per_s"]),
        "max_abs_diff_normalised": float(np.abs(a_unit - b_unit).max()),
        "min_cosine": float((a_unit * b_unit).sum(1).min()),
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
