"""Group ``tied_step``: one training step of a tied retriever tower, fp32 against bf16 autocast.

Issue #43's TweetQA first-stage grid spends most of its time in the tied-tower rows
(docs/results/real/tweetqa-open/first-stage/timing/): each of their steps re-embeds the batch's
candidates with gradient, so a step is a MiniLM forward and backward over ~80 passages. attnrag trains
the retriever in fp32 whatever ``precision`` says (autocast covers only the reader), so whether bf16
autocast would make that step cheaper, and by how much it moves the step's loss and gradient, is the
question this group answers before anyone changes the trainer.

The workload is the grid's own shape: ``questions`` (8, the grid's ``distill_batch_size``) TweetQA
training questions (``../shared/data/tweetqa-open``; the demo world's when that is absent), each with
BM25's top ``candidates`` (10, the grid's ``distill_passages``); one step embeds the questions and the
union of their candidates with gradient (:meth:`BiEncoder.embed_queries` / ``embed_passages``, what
the trainer calls), scores every question against the pool, takes the cross-entropy of each question's
BM25 favourite among its own candidates (a stand-in target: the cost does not depend on it) and runs
the backward. No optimiser update, so every repeat sees the same weights. Dropout is off (``eval``
mode) so the two methods' outputs can be compared; the cost is the same.

Methods, on one BiEncoder, round-robin after warm-up (:func:`_bench.time_interleaved`):
``fp32`` (what attnrag runs), ``bf16_autocast`` (``torch.autocast(device, torch.bfloat16)`` around the
forward; weights and gradients stay fp32). Reported: each method's times, ``bf16_autocast``'s paired
ratio over ``fp32`` with a bootstrap interval, and its loss's absolute and gradient norm's relative
difference from fp32's. Whether the CPU has native bf16 (AMX or AVX512-BF16) is in the machine record.
"""

from __future__ import annotations

import torch

from _bench import REPO_ROOT, Method, log, paired_ratio_interval, time_interleaved

FULL = {"questions": 8, "candidates": 10, "warmup": 2, "repeats": 10}
#: smoke: the pipeline in seconds; its numbers mean nothing
SMOKE = {"questions": 2, "candidates": 3, "warmup": 0, "repeats": 2}
TWEETQA = REPO_ROOT.parent / "shared" / "data" / "tweetqa-open"


def workload(n: int, k: int) -> tuple[str, list[str], list[list]]:
    """``n`` training questions and BM25's top ``k`` passages for each: TweetQA's where the shared data
    is present, else the demo world's. Returns the source's name with them."""
    from attnrag.data.formats import load_corpus_dir
    from attnrag.data.synth import generate_world
    from attnrag.retrieval.lexical import BM25Index

    if (TWEETQA / "train.jsonl").is_file():
        passages, splits = load_corpus_dir(TWEETQA)
        source, examples = str(TWEETQA), splits["train"][:n]
    else:
        world = generate_world(seed=0, size="default")
        source, passages, examples = "demo world (seed 0)", world.passages, world.train[:n]
    by_id = {p.id: p for p in passages}
    _, ids = BM25Index.build(passages).search([e.question for e in examples], k)
    return source, [e.question for e in examples], [[by_id[i] for i in row] for row in ids]


def step(encoder, questions: list[str], candidates: list[list], bf16: bool):
    """One tied-tower step's forward and backward (no update); returns its loss and gradient norm."""
    unique = sorted({p.id for row in candidates for p in row})
    position = {pid: i for i, pid in enumerate(unique)}
    by_id = {p.id: p for row in candidates for p in row}
    own = [[position[p.id] for p in row] for row in candidates]
    params = [p for p in encoder.parameters() if p.requires_grad]
    device = encoder.device

    def run():
        for p in params:
            p.grad = None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            q = encoder.embed_queries(questions)
            pooled = encoder.embed_passages([by_id[pid] for pid in unique])
        logits = (q.float() @ pooled.float().T) / 0.05
        own_logits = torch.stack([logits[b, cols] for b, cols in enumerate(own)])
        loss = torch.nn.functional.cross_entropy(own_logits, torch.zeros(len(own), dtype=torch.long))
        loss.backward()
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
        return float(loss.detach()), float(norm)

    return run


def run(smoke: bool = False) -> dict:
    from attnrag.models import DEFAULT_RETRIEVER
    from attnrag.retrieval.encoder import BiEncoder, passage_to_text

    cfg = SMOKE if smoke else FULL
    source, questions, candidates = workload(cfg["questions"], cfg["candidates"])
    encoder = BiEncoder.from_pretrained(DEFAULT_RETRIEVER, device="cpu")
    encoder.eval()  # dropout off: the two methods' outputs are comparable; the cost is the same
    texts = {p.id: p for row in candidates for p in row}
    tokens = sum(len(ids) for ids in encoder.tokenizer([passage_to_text(p) for p in texts.values()], truncation=True,
                                                         max_length=encoder.passage_max_length)["input_ids"])
    methods = {"fp32": Method(step(encoder, questions, candidates, bf16=False)),
               "bf16_autocast": Method(step(encoder, questions, candidates, bf16=True))}
    timed = time_interleaved(methods, cfg["warmup"], cfg["repeats"])
    fp32_loss, fp32_norm = methods["fp32"].last
    out = {"config": {**cfg, "source": source}, "passages": len(texts), "passage_tokens": tokens, "methods": {}}
    for name, times in timed.items():
        loss, norm = methods[name].last
        out["methods"][name] = {**times, "loss": loss, "grad_norm": norm,
                                "loss_abs_diff": abs(loss - fp32_loss), "grad_norm_rel_diff": abs(norm - fp32_norm) / fp32_norm,
                                "over_fp32": None if name == "fp32" else paired_ratio_interval(
                                    times["repeats_s"], timed["fp32"]["repeats_s"])}
        log(f"tied_step {name}: median {times['median_s']:.2f} s")
    return out


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    print(json.dumps(run(smoke=ap.parse_args().smoke), indent=2))
