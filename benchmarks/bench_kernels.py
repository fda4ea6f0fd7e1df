"""Group ``kernels``: ``torch.compile`` and thread settings on the demo's three fp32 workloads.

Issue #43 asks whether a faster kernel path could take the fp32 demo further than removing waste did.
The demo's time goes to three computations (docs/results/demo-fp32/): the reader's answer generation
for EM (prefill-bound), the teacher pass (a no-gradient forward with attnrag's capture) and the
reader's fine-tuning steps (forward through 30 blocks, backward through the top 12). Each is timed
here on the demo's own shapes, in the precision given (fp32 unless ``--precision``):

``generation``
    the first 64 test questions of the demo world, the zero-shot retriever's top 3 each, 32 a batch,
    10 new tokens (:func:`bench_generation.demo_prompts`);
``teacher``
    ``capture_token_attention`` (signal ``norm``) on 4 of those questions with their top 5 and gold
    answers: one chunk of the demo's teacher pass (``reader_batch_size`` 4, ``distill_passages`` 5);
``train_step``
    one reader fine-tuning step on the same 4 questions, their top 3 and gold answers: ``loss`` +
    ``backward`` with the top 8 blocks and the final norm trainable, as the demo's reader stage runs it
    (``reader_batch_size`` 4, ``n_passages`` 3, ``reader_trainable_layers`` 8).

Methods, each on its own copy of the reader (same weights), timed round-robin after warm-up
(:func:`_bench.time_interleaved`; 3 rounds of generation, 8 of the two short workloads):

``eager``
    the reader as attnrag runs it;
``compiled``
    the base model's ``nn.Module.compile(dynamic=True)`` (inductor, the default backend; its first
    calls, which compile, are reported apart as ``compile_s``). For generation and the training step
    its attention is transformers' ``"sdpa"`` (the same layer output as attnrag's function when
    nothing is captured; attnrag's reads a ``ContextVar``, a graph break per layer); the teacher needs
    attnrag's capturing function, so there it is compiled with its graph breaks (``dynamo``: graphs
    and breaks of one forward);
``one_thread``
    ``eager`` under ``torch.set_num_threads(1)`` (the thread setting: the demo runs with one thread per
    core, which PyTorch picks by itself).

Reported per workload: each method's times, the paired ratio against ``eager`` with a bootstrap interval,
and whether its outputs match ``eager``'s (answers identical; teacher scores' and loss's largest absolute
difference; the gradient norm's relative difference).
"""

from __future__ import annotations

import time

import torch

from _bench import Method, log, paired_ratio_interval, quiet_transformers, time_interleaved

FULL = {"questions": 64, "batch_size": 32, "max_new_tokens": 10, "chunk": 4, "candidates": 5,
        "trainable_layers": 8, "warmup": 1, "repeats": 3, "short_repeats": 8}
SMOKE = {"questions": 4, "batch_size": 2, "max_new_tokens": 3, "chunk": 2, "candidates": 3,
         "trainable_layers": 2, "warmup": 0, "repeats": 2, "short_repeats": 2}


def _prompts(n: int, k: int):
    """The first ``n`` test questions of the demo world, the zero-shot retriever's top ``k``, gold answers."""
    from bench_generation import demo_examples

    examples, passages = demo_examples(n, k)
    return [e.question for e in examples], passages, [e.answers[0] for e in examples]


def _compiled(precision: str, plain_sdpa: bool, batch):
    """A fresh reader whose base model (what ``_hidden`` and ``generate`` both call) is compiled.

    ``plain_sdpa``: transformers' own ``"sdpa"`` attention instead of attnrag's capturing function, which
    computes the same layer output when nothing is captured (generation, training) but reads a
    ``ContextVar`` that Dynamo cannot trace (a graph break in every layer)."""
    from bench_teacher_pass import load_reader

    other = load_reader(precision)
    if plain_sdpa:
        other.model.set_attn_implementation("sdpa")
    breaks = _graph_breaks(other, batch)
    other.decoder.compile(dynamic=True)
    return other, breaks


def _graph_breaks(reader, batch) -> dict:
    """Dynamo's graphs and graph breaks for one forward of the base model (``torch._dynamo.explain``)."""
    import torch._dynamo

    with torch.no_grad():
        explained = torch._dynamo.explain(reader.decoder)(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids,
            use_cache=False)
    return {"graphs": explained.graph_count, "graph_breaks": explained.graph_break_count,
            "first_reason": explained.break_reasons[0].reason.splitlines()[0] if explained.break_reasons else None}


def _one_thread(fn):
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)

    return run


def _first_call(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _report(workload: str, timed: dict, methods: dict, same) -> dict:
    out = {}
    for name, times in timed.items():
        out[name] = {**times, "same_as_eager": same(methods[name].last, methods["eager"].last),
                     "over_eager": None if name == "eager" else paired_ratio_interval(
                         times["repeats_s"], timed["eager"]["repeats_s"])}
        log(f"kernels {workload} {name}: median {times['median_s']:.2f} s")
    return out


def run(smoke: bool = False, precision: str = "fp32") -> dict:
    quiet_transformers()
    from bench_teacher_pass import load_reader

    cfg = SMOKE if smoke else FULL
    questions, passages, answers = _prompts(cfg["questions"], cfg["candidates"])
    eager = load_reader(precision)
    n = cfg["chunk"]
    batch = eager.batch(questions[:n], passages[:n], answers[:n], with_labels=True)
    compiled, sdpa_breaks = _compiled(precision, True, batch)
    compiled_capture, capture_breaks = _compiled(precision, False, batch)
    result: dict = {"config": {**cfg, "precision": precision}, "workloads": {}}
    warm, reps = cfg["warmup"], cfg["repeats"]

    # generation: the demo's EM answers
    top3 = [ps[:3] for ps in passages]

    def generate(r):
        return lambda: r.generate(questions, top3, max_new_tokens=cfg["max_new_tokens"], batch_size=cfg["batch_size"])

    compile_s, _ = _first_call(generate(compiled))
    methods = {"eager": Method(generate(eager)), "compiled": Method(generate(compiled)),
               "one_thread": Method(_one_thread(generate(eager)))}
    timed = time_interleaved(methods, warm, reps)
    result["workloads"]["generation"] = {
        "compile_s": round(compile_s, 2), "dynamo": sdpa_breaks,
        "methods": _report("generation", timed, methods, lambda a, b: round(sum(x == y for x, y in zip(a, b, strict=True)) / len(b), 4))}

    # the teacher pass: one chunk of the demo's

    def teacher(r):
        return lambda: r.capture_token_attention(batch, signal="norm").float()

    def max_abs(a, b):
        return float((a - b).abs().max())

    compile_s, _ = _first_call(teacher(compiled_capture))
    methods = {"eager": Method(teacher(eager)), "compiled": Method(teacher(compiled_capture)),
               "one_thread": Method(_one_thread(teacher(eager)))}
    timed = time_interleaved(methods, warm, cfg["short_repeats"])
    result["workloads"]["teacher"] = {"compile_s": round(compile_s, 2), "dynamo": capture_breaks,
                                      "methods": _report("teacher", timed, methods, max_abs)}

    # one reader fine-tuning step (no optimiser update: the weights stay the same for every repeat)
    def step(r, batch):
        params = r.trainable_parameters(cfg["trainable_layers"])
        r.model.train()

        def run():
            for p in params:
                p.grad = None
            loss = r.loss(batch)
            loss.backward()
            norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
            return float(loss.detach()), float(norm)

        return run

    def step_diff(a, b):
        return {"loss_abs": abs(a[0] - b[0]), "grad_norm_rel": abs(a[1] - b[1]) / b[1]}

    train_batch = eager.batch(questions[:n], top3[:n], answers[:n], with_labels=True)
    eager_step, compiled_step = step(eager, train_batch), step(compiled, train_batch)
    compile_s, _ = _first_call(compiled_step)
    methods = {"eager": Method(eager_step), "compiled": Method(compiled_step),
               "one_thread": Method(_one_thread(eager_step))}
    timed = time_interleaved(methods, warm, cfg["short_repeats"])
    result["workloads"]["train_step"] = {"compile_s": round(compile_s, 2), "dynamo": sdpa_breaks,
                                         "methods": _report("train_step", timed, methods, step_diff)}
    return result


def matmul_rate(tokens: int = 2048, repeats: int = 20) -> dict:
    """This CPU's fp32 matrix-multiply rate (GFLOP/s) at the reader's linear shapes (SmolLM2-135M:
    576 -> 576, 576 -> 1536, 1536 -> 576), best of ``repeats``: the ceiling a dense fp32 forward can reach."""
    rates = {}
    for d_in, d_out in ((576, 576), (576, 1536), (1536, 576)):
        x, w = torch.randn(tokens, d_in), torch.randn(d_in, d_out)
        torch.mm(x, w)
        best = min(_first_call(lambda x=x, w=w: torch.mm(x, w))[0] for _ in range(repeats))
        rates[f"{d_in}x{d_out}"] = round(2 * tokens * d_in * d_out / best / 1e9, 1)
    return {"tokens": tokens, "gflops": rates, "threads": torch.get_num_threads()}


def rates(kernels: dict) -> dict:
    """How close the eager workloads of a ``kernels`` result run to :func:`matmul_rate`.

    FLOPs counted: the decoder blocks' linear layers only (2 x 106.2 M multiply-adds per token forward for
    SmolLM2-135M; a training step adds 2 x the trainable blocks' share for the weight and input
    gradients), over the tokens each workload computes, padding included. Attention scores, norms,
    the LM head and decoding are left out, so the rate is a lower bound on what the CPU does."""
    from bench_teacher_pass import load_reader

    cfg = kernels["config"]
    questions, passages, answers = _prompts(cfg["questions"], cfg["candidates"])
    reader = load_reader(cfg["precision"])
    n, top3 = cfg["chunk"], [ps[:3] for ps in passages]
    config = reader.model.config
    per_block = (config.hidden_size * config.num_attention_heads * config.head_dim * 2
                 + config.hidden_size * config.num_key_value_heads * config.head_dim * 2
                 + 3 * config.hidden_size * config.intermediate_size)
    blocks = config.num_hidden_layers
    lengths = sorted(len(reader.encode(q, ps).input_ids) for q, ps in zip(questions, top3, strict=True))
    bs = cfg["batch_size"]
    prefill = sum(max(lengths[s : s + bs]) * len(lengths[s : s + bs]) for s in range(0, len(lengths), bs))
    teacher_tokens = reader.batch(questions[:n], passages[:n], answers[:n], with_labels=True).input_ids.numel()
    train_tokens = reader.batch(questions[:n], top3[:n], answers[:n], with_labels=True).input_ids.numel()
    flops = {"generation": 2 * per_block * blocks * prefill,
             "teacher": 2 * per_block * blocks * teacher_tokens,
             "train_step": 2 * per_block * blocks * train_tokens
             + 4 * per_block * cfg["trainable_layers"] * train_tokens}
    out = {"tokens": {"generation_prefill_padded": prefill, "teacher": teacher_tokens, "train_step": train_tokens},
           "linear_params_per_block": per_block, "blocks": blocks, "matmul": matmul_rate(), "workloads": {}}
    for name, count in flops.items():
        seconds = kernels["workloads"][name]["methods"]["eager"]["median_s"]
        out["workloads"][name] = {"gflop": round(count / 1e9, 1), "eager_median_s": seconds,
                                  "gflops_at_least": round(count / seconds / 1e9, 1)}
    return out


if __name__ == "__main__":
    import argparse
    import json
    from pathlib import Path

    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--rates", type=Path, default=None,
                    help="instead of timing: the FLOP rates of the eager workloads of this results file's kernels group")
    args = ap.parse_args()
    if args.rates is not None:
        from _bench import machine_info

        kernels = json.loads(args.rates.read_text())["groups"]["kernels"]
        print(json.dumps({"rates": rates(kernels), "machine": machine_info(), "source": str(args.rates)}, indent=2))
    else:
        print(json.dumps(run(smoke=args.smoke, precision=args.precision), indent=2))
