"""Group ``generation``: the demo's answer generation, and the kernel options for it, side by side.

The demo's evaluation generates answers for its test questions from the top 3 passages of the
zero-shot retriever, 32 prompts a batch, at most 10 new tokens (``PaperConfig.demo()``). Here the
same: the first ``n`` test questions of the generated demo world (seed 0), the zero-shot
retriever's top 3 for each, the default reader in the given precision. Methods, timed round-robin
(:func:`_bench.time_interleaved`), each on the same prompts:

``arrival``
    the batches in the questions' order, as attnrag batched before sorting by prompt length
    (``reader.generate`` on each 32-question slice in turn: one batch each);
``by_length``
    ``reader.generate`` on all of them: batches formed by prompt length (what attnrag does now);
``int8_dynamic``
    ``by_length`` with every ``nn.Linear`` of a copy of the reader replaced by PyTorch's dynamic int8
    (``torch.ao.quantization.quantize_dynamic``: int8 weights, activations quantised per batch), a
    kernel option the demo could take for its no-gradient generation;
``prefill_only``
    ``by_length`` with one new token: what the prompts' forward alone costs, so the rest is the
    decoding.

Also reported: each method's answers against ``by_length``'s (the fraction identical), and the
per-round ratio against ``arrival`` with a bootstrap interval (:func:`_bench.paired_ratio_interval`).
"""

from __future__ import annotations

import copy
import warnings

import torch

from _bench import Method, log, paired_ratio_interval, quiet_transformers, time_interleaved

FULL = {"questions": 64, "batch_size": 32, "max_new_tokens": 10, "warmup": 1, "repeats": 3}
SMOKE = {"questions": 4, "batch_size": 2, "max_new_tokens": 3, "warmup": 0, "repeats": 2}


def demo_examples(n: int, k: int = 3) -> tuple[list, list[list]]:
    """The first ``n`` test examples of the demo world and the zero-shot retriever's top ``k`` for each."""
    from attnrag.data.synth import generate_world
    from attnrag.models import DEFAULT_RETRIEVER
    from attnrag.retrieval.encoder import BiEncoder
    from attnrag.retrieval.index import build_index, retrieve

    world = generate_world(seed=0, size="default")
    examples = world.test[:n]
    encoder = BiEncoder.from_pretrained(DEFAULT_RETRIEVER, device="cpu")
    index = build_index(world.passages, encoder, progress=False)
    by_id = {p.id: p for p in world.passages}
    _, passages = retrieve(index, by_id, encoder, [e.question for e in examples], k)
    return examples, passages


def demo_prompts(n: int) -> tuple[list[str], list[list]]:
    """The first ``n`` test questions of the demo world and the zero-shot retriever's top 3 for each."""
    examples, passages = demo_examples(n, 3)
    return [e.question for e in examples], passages


def int8_copy(reader):
    """A copy of ``reader`` whose linear layers run PyTorch's dynamic int8 kernels (fbgemm on x86)."""
    quantized = copy.copy(reader)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.ao.quantization points to torchao
        quantized.model = torch.ao.quantization.quantize_dynamic(copy.deepcopy(reader.model), {torch.nn.Linear},
                                                                 dtype=torch.qint8)
    return quantized


def run(smoke: bool = False, precision: str = "fp32") -> dict:
    quiet_transformers()
    from bench_teacher_pass import load_reader

    cfg = SMOKE if smoke else FULL
    questions, passages = demo_prompts(cfg["questions"])
    reader = load_reader(precision)
    lengths = [len(reader.encode(q, ps).input_ids) for q, ps in zip(questions, passages, strict=True)]
    bs, new = cfg["batch_size"], cfg["max_new_tokens"]

    def arrival(r=reader):
        out = []
        for start in range(0, len(questions), bs):
            out += r.generate(questions[start : start + bs], passages[start : start + bs], max_new_tokens=new,
                              batch_size=bs)
        return out

    quantized = int8_copy(reader)
    methods = {
        "arrival": Method(arrival),
        "by_length": Method(lambda: reader.generate(questions, passages, max_new_tokens=new, batch_size=bs)),
        "int8_dynamic": Method(lambda: quantized.generate(questions, passages, max_new_tokens=new, batch_size=bs)),
        "prefill_only": Method(lambda: reader.generate(questions, passages, max_new_tokens=1, batch_size=bs)),
    }
    log(f"generation: {len(questions)} prompts, {min(lengths)}-{max(lengths)} tokens, batch {bs}, {new} new tokens")
    timed = time_interleaved(methods, cfg["warmup"], cfg["repeats"])
    reference = methods["by_length"].last
    padded = {"arrival": sum(max(lengths[s : s + bs]) * len(lengths[s : s + bs]) for s in range(0, len(lengths), bs))}
    ordered = sorted(lengths)
    padded["by_length"] = sum(max(ordered[s : s + bs]) * len(ordered[s : s + bs]) for s in range(0, len(ordered), bs))
    result = {"config": {**cfg, "precision": precision}, "prompt_tokens": sum(lengths),
              "padded_prompt_tokens": padded, "methods": {}}
    for name, times in timed.items():
        answers = methods[name].last
        result["methods"][name] = {
            **times,
            "same_answers_as_by_length": round(sum(a == b for a, b in zip(answers, reference, strict=True))
                                               / len(reference), 4) if name != "prefill_only" else None,
            "over_arrival": paired_ratio_interval(times["repeats_s"], timed["arrival"]["repeats_s"])
            if name != "arrival" and cfg["repeats"] >= 2 else None,
        }
        log(f"generation {name}: median {times['median_s']:.2f} s")
    return result


if __name__ == "__main__":
    import argparse
    import json

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    print(json.dumps(run(smoke=args.smoke, precision=args.precision), indent=2))
