"""Calibrate the synthetic world's difficulty against a zero-shot dense retriever.

The generator (``attnrag.data.synth``) is meant to be hard but not hopeless for an off-the-shelf
retriever: the targets on ``test`` are gold recall@1 in [0.35, 0.60], gold recall@5 >= 0.85,
gold recall@10 >= 0.93 and answer recall@10 >= 0.90. This script measures them with
all-MiniLM-L6-v2 exactly as the project's zero-shot baseline uses it: masked mean pooling, no
normalisation, inner product; passages encoded as ``title + " | " + text``. It also reports the
passage lengths in SmolLM2 tokens (the reader's budget) and the generation time.

With ``--adapter`` it checks in seconds that the difficulty is learnable: it fits a linear map on
the frozen question embeddings using the *train* questions and measures the test split again, which
asks about other entities. ``--finetune`` does the same with the whole query encoder (two epochs
against the frozen passage embeddings, softmax over the whole corpus; CPU minutes).

Usage::

    .venv/bin/python benchmarks/calibrate_synth.py [--seed 0] [--size default] [--split test]
        [--cosine] [--adapter] [--finetune] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from attnrag.data.synth import contains_answer, generate_world

MODELS = Path(os.environ.get("ATTNRAG_MODELS", Path.home() / ".cache/attnrag/models"))
TARGETS = {"gold@1": (0.35, 0.60), "gold@5": (0.85, 1.0), "gold@10": (0.93, 1.0), "answer@10": (0.90, 1.0)}


def encode(model, texts: list[str], normalize: bool) -> np.ndarray:
    return model.encode(texts, batch_size=128, convert_to_numpy=True, normalize_embeddings=normalize,
                        show_progress_bar=False)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def evaluate(world, questions, pm: np.ndarray, qm: np.ndarray, name: str) -> dict:
    """Gold and answer recall@k over the whole corpus, exhaustive inner-product search."""
    top = np.argsort(-(qm @ pm.T), axis=1)[:, :20]
    ks = (1, 5, 10, 20)
    gold: dict[int, list[bool]] = {k: [] for k in ks}
    ans: dict[int, list[bool]] = {k: [] for k in ks}
    per_rel: dict[str, list[bool]] = defaultdict(list)
    for q, row in zip(questions, top):
        g = set(q.gold_passage_ids)
        hit = next((r for r, i in enumerate(row) if world.passages[i].id in g), None)
        has = next((r for r, i in enumerate(row)
                    if any(contains_answer(world.passages[i].text, a) for a in q.answers)), None)
        for k in ks:
            gold[k].append(hit is not None and hit < k)
            ans[k].append(has is not None and has < k)
        per_rel[world.relations[q.id]].append(hit == 0)
    res: dict = {f"gold@{k}": float(np.mean(v)) for k, v in gold.items()}
    res.update({f"answer@{k}": float(np.mean(v)) for k, v in ans.items()})
    res["per_relation_gold@1"] = {r: round(float(np.mean(v)), 3) for r, v in sorted(per_rel.items())}
    print(f"[{name}] " + "  ".join(f"{k}={v:.3f}" for k, v in res.items() if not isinstance(v, dict)))
    print(f"[{name}] per relation gold@1:", res["per_relation_gold@1"])
    return res


def finetune_query_side(model, world, passage_emb: np.ndarray, epochs: int = 2, batch_size: int = 32,
                        lr: float = 3e-5, seed: int = 0):
    """Train a copy of the query encoder on train questions against the frozen passage embeddings.

    A learnability check, not a method: softmax over the whole corpus (raw dot products, as the
    retriever scores), cross-entropy on the gold passage. Query-side only, so the corpus is
    encoded once and the check takes a few CPU minutes.
    """
    import copy
    import random

    import torch

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tuned = copy.deepcopy(model)
    row = {p.id: i for i, p in enumerate(world.passages)}
    corpus = torch.from_numpy(passage_emb)
    opt = torch.optim.AdamW(tuned.parameters(), lr=lr)
    prep = getattr(tuned, "preprocess", None) or tuned.tokenize  # renamed in sentence-transformers 6
    tuned.train()
    n_steps = epochs * -(-len(world.train) // batch_size)
    step = 0
    for _ in range(epochs):
        order = rng.sample(world.train, len(world.train))
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            q = tuned(prep([x.question for x in batch]))["sentence_embedding"]
            target = torch.tensor([row[x.gold_passage_ids[0]] for x in batch])
            loss = torch.nn.functional.cross_entropy(q @ corpus.T, target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 20 == 1 or step == n_steps:
                print(f"  fine-tune step {step}/{n_steps} loss {loss.item():.3f}", flush=True)
    tuned.eval()
    return tuned


def train_query_adapter(train_q: np.ndarray, train_gold: np.ndarray, passage_emb: np.ndarray,
                        steps: int = 300, lr: float = 1e-3, seed: int = 0) -> np.ndarray:
    """Learn a linear map W (identity at start) on frozen query embeddings: q -> q @ W.

    The cheapest learnability check: if a linear re-weighting of the question embedding, fitted
    on train questions, lifts recall on test questions about *other* entities, then the
    question-wording -> passage mapping is learnable and transfers. Full-batch Adam, softmax over
    the whole corpus with raw dot products; seconds on a CPU.
    """
    import torch

    torch.manual_seed(seed)
    q = torch.from_numpy(train_q)
    corpus = torch.from_numpy(passage_emb)
    target = torch.from_numpy(train_gold)
    w = torch.nn.Parameter(torch.eye(q.shape[1]))
    opt = torch.optim.Adam([w], lr=lr)
    for step in range(steps):
        loss = torch.nn.functional.cross_entropy((q @ w) @ corpus.T, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"  adapter step {step + 1}/{steps} loss {loss.item():.3f}", flush=True)
    return w.detach().numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", default="default")
    ap.add_argument("--split", default="test")
    ap.add_argument("--cosine", action="store_true", help="also report cosine similarity")
    ap.add_argument("--adapter", action="store_true",
                    help="also fit a linear query adapter on train (seconds), re-measure")
    ap.add_argument("--finetune", action="store_true",
                    help="also fine-tune the query side on train, re-measure")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    world = generate_world(args.seed, args.size)
    gen_s = time.perf_counter() - t0
    questions = world.splits()[args.split]
    print(f"generated {len(world.passages)} passages, "
          f"{len(world.train)}/{len(world.dev)}/{len(world.test)} questions in {gen_s:.2f}s")

    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MODELS / "smollm2-135m-instruct")
    words = [len(p.text.split()) for p in world.passages]
    n_text = [len(tok(p.text, add_special_tokens=False).input_ids) for p in world.passages]
    n_full = [len(tok(f"{p.title}\n{p.text}", add_special_tokens=False).input_ids) for p in world.passages]
    lengths = {
        "words_mean": statistics.mean(words), "words_min": min(words), "words_max": max(words),
        "tokens_text_mean": statistics.mean(n_text), "tokens_text_max": max(n_text),
        "tokens_title_text_mean": statistics.mean(n_full), "tokens_title_text_max": max(n_full),
        "tokens_title_text_min": min(n_full),
    }
    print("lengths:", {k: round(v, 1) for k, v in lengths.items()})

    full = SentenceTransformer(str(MODELS / "minilm-l6-v2"), device="cpu")
    # Drop the Normalize module: the project's retriever uses raw mean-pooled states and dot product.
    model = SentenceTransformer(modules=[full[0], full[1]], device="cpu")
    t1 = time.perf_counter()
    P = encode(model, [f"{p.title} | {p.text}" for p in world.passages], normalize=False)
    Q = encode(model, [q.question for q in questions], normalize=False)
    enc_s = time.perf_counter() - t1

    results: dict[str, dict] = {}
    variants = [("dot", P, Q)]
    if args.cosine:
        variants.append(("cosine", _unit(P), _unit(Q)))
    for name, pm, qm in variants:
        results[name] = evaluate(world, questions, pm, qm, name)
    if args.adapter:
        t2 = time.perf_counter()
        row = {p.id: i for i, p in enumerate(world.passages)}
        Qtr = encode(model, [q.question for q in world.train], normalize=False)
        gold = np.array([row[q.gold_passage_ids[0]] for q in world.train])
        W = train_query_adapter(Qtr, gold, P)
        results["adapter_train_dot"] = evaluate(world, world.train, P, Qtr @ W, "adapter, train questions")
        results["adapter_dot"] = evaluate(world, questions, P, Q @ W, "adapter, " + args.split)
        print(f"adapter took {time.perf_counter() - t2:.0f}s")
    if args.finetune:
        t2 = time.perf_counter()
        tuned = finetune_query_side(model, world, P)
        Q2 = encode(tuned, [q.question for q in questions], normalize=False)
        results["finetuned_query_dot"] = evaluate(world, questions, P, Q2, "query-side fine-tuned dot")
        print(f"fine-tuning and re-encoding took {time.perf_counter() - t2:.0f}s")
    ok = all(lo <= results["dot"][k] <= hi for k, (lo, hi) in TARGETS.items())
    print(f"encode {enc_s:.1f}s; targets {'MET' if ok else 'NOT met'}: "
          + ", ".join(f"{k} in [{lo}, {hi}]" for k, (lo, hi) in TARGETS.items()))
    if args.json:
        args.json.write_text(json.dumps({"seed": args.seed, "size": args.size, "split": args.split,
                                         "generation_s": gen_s, "lengths": lengths,
                                         "results": results, "targets_met": ok}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
