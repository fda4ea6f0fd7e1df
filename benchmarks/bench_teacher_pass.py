"""Group ``teacher_pass``: what the attention teacher costs compared with a plain forward and with eager maps.

Three methods on the same reader batch (default reader, fp32, CPU, eval mode, one question with K
passages of exactly ``tokens`` content tokens each and a 3-token answer):

``plain``
    ``reader._hidden(batch)`` under ``torch.no_grad``: the forward of the base model with SDPA and no
    capture (no LM head): the cost floor of reading K passages.
``teacher``
    ``reader.capture_token_attention(batch, signal="norm")``: attnrag's teacher pass (SDPA plus the
    answer-row recomputation inside the ``attnrag_sdpa`` attention function).
``eager``
    ``set_attn_implementation("eager")`` and ``output_attentions=True`` on the base model, value norms
    from ``v_proj`` forward hooks, and the same ``[B, L]`` token scores reduced from the returned
    maps (the way one would compute the teacher without attnrag's capture).

Time: median of interleaved repeats after warm-up, in this process. Peak memory: a fresh
subprocess per (method, K) loads the model, builds the batch, warms the method up on a tiny input,
then measures the peak RSS of one run *above the RSS just before it* (model loaded, batch built).
Numerical check: ``teacher`` vs ``eager`` token and passage scores, max relative error.

Standalone::

    python benchmarks/bench_teacher_pass.py [--smoke]                 # the group, JSON on stdout
    python benchmarks/bench_teacher_pass.py --profile --k 20 --tokens 100   # torch.profiler tables
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
from functools import lru_cache
from pathlib import Path

import torch
from _bench import (
    Method,
    PeakRSS,
    apply_threads,
    log,
    machine_info,
    paired_ratio_interval,
    quiet_transformers,
    ratio,
    rss_mib,
    run_worker,
    time_interleaved,
)

READER = "smollm2-135m-instruct"
SIGNAL = "norm"
#: The reader's compute precision for these groups. fp32 is what the comparison is specified for; the
#: reader's own default ("auto") may pick bf16 autocast on CPUs with AMX/AVX512-BF16.
PRECISION = "fp32"
#: Where the reader runs: ``cpu`` (the tested target, and what the committed numbers are) or ``cuda`` for
#: benchmarks/gpu_check.sh (ATTNRAG_BENCH_DEVICE=cuda); on CUDA, peak memory is not measured (it is RSS).
DEVICE = os.environ.get("ATTNRAG_BENCH_DEVICE", "cpu")
ANSWER_TOKENS = 3
METHODS = ("plain", "teacher", "eager")

FULL = {"ks": [5, 10, 20], "tokens": 100, "batch": 1, "warmup": 1, "repeats": 7, "memory": True}
SMOKE = {"ks": [2], "tokens": 24, "batch": 1, "warmup": 1, "repeats": 3, "memory": True}
TARGETS = {"time_teacher_over_plain_max": 1.10, "peak_memory_teacher_over_eager_max": 0.2, "at_k": 20,
           "max_rel_error": 1e-5}


# ---------------------------------------------------------------------------------------------- inputs
def load_reader(precision: str = PRECISION):
    """The default reader, fp32 weights on CPU, eval mode, with attnrag's capturing SDPA attention.

    ``precision`` is the reader's autocast setting (``fp32``: none) where the reader has one.
    """
    quiet_transformers()
    from attnrag.reader.decoder import DecoderReader

    kwargs = {}
    if "precision" in inspect.signature(DecoderReader.from_pretrained).parameters:
        kwargs["precision"] = precision
    elif precision != "fp32":
        raise ValueError(f"this DecoderReader has no precision option; cannot run {precision!r}")
    reader = DecoderReader.from_pretrained(READER, device=DEVICE, dtype=torch.float32, **kwargs)
    reader.model.eval()
    return reader


def reader_precision(reader) -> dict:
    """The reader's precision setting and the autocast dtype it resolves to on this machine."""
    setting = getattr(reader, "precision", "fp32")
    try:
        from attnrag.reader.decoder import resolve_precision

        dtype = resolve_precision(setting, reader.device)
    except ImportError:
        dtype = None
    return {"precision": setting,
            "autocast_dtype": str(dtype).replace("torch.", "") if dtype else "none"}


def _autocast(reader):
    return reader.autocast() if hasattr(reader, "autocast") else contextlib.nullcontext()


def set_passage_tokens(reader, tokens: int) -> None:
    """Make the prompt cut every passage's content to exactly ``tokens`` tokens (all inputs are longer)."""
    from attnrag.reader.prompt import PromptBuilder

    reader.prompt = dataclasses.replace(reader.prompt, max_passage_tokens=tokens)
    reader.builder = PromptBuilder(reader.tokenizer, reader.prompt)


@lru_cache(maxsize=1)
def _world():
    from attnrag.data.synth import generate_world

    return generate_world(seed=0, size="small")


def make_examples(reader, k: int, tokens: int, batch: int = 1):
    """``batch`` questions, each with ``k`` passages of exactly ``tokens`` content tokens, 3-token answers.

    Passages are built from the synthetic world: each starts with one world passage and continues
    with the text of the following ones until it is longer than ``tokens``; the prompt truncates it
    to exactly ``tokens``. The gold passage of each question is placed in the middle.
    """
    from attnrag.data.records import Passage

    world = _world()
    by_id = {p.id: i for i, p in enumerate(world.passages)}
    tok = reader.tokenizer

    def n_tok(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    picked = [ex for ex in world.train if n_tok(ex.answers[0]) == ANSWER_TOKENS][:batch]
    if len(picked) < batch:
        raise RuntimeError(f"the synthetic world has fewer than {batch} questions with a "
                           f"{ANSWER_TOKENS}-token answer")
    n_world = len(world.passages)
    questions, passages, answers = [], [], []
    for qi, ex in enumerate(picked):
        gold = by_id[ex.gold_passage_ids[0]]
        starts = [(gold + 7 * (j + 1) + 31 * qi) % n_world for j in range(k)]
        starts[k // 2] = gold
        row = []
        for j, start in enumerate(starts):
            first = world.passages[start]
            text, nxt = first.text, start
            while n_tok(reader.prompt.passage_text.format(title=first.title, text=text)) <= tokens:
                nxt = (nxt + 1) % n_world
                text = f"{text} {world.passages[nxt].text}"
            row.append(Passage(f"bench-{qi}-{j}", first.title, text))
        questions.append(ex.question)
        passages.append(row)
        answers.append(ex.answers[0])
    return questions, passages, answers


def make_batch(reader, k: int, tokens: int, batch: int = 1):
    set_passage_tokens(reader, tokens)
    q, p, a = make_examples(reader, k, tokens, batch)
    b = reader.batch(q, p, a)
    lengths = {e - s for row in b.passage_spans for s, e in row}
    if lengths != {tokens}:
        raise AssertionError(f"passage content lengths {sorted(lengths)}, expected exactly {tokens}")
    if any(e - s != ANSWER_TOKENS for s, e in b.answer_spans):
        raise AssertionError("answer is not 3 tokens")
    return b


# ---------------------------------------------------------------------------------------------- methods
def plain_forward(reader, batch) -> torch.Tensor:
    with torch.no_grad():
        return reader._hidden(batch)


def teacher_pass(reader, batch) -> torch.Tensor:
    return reader.capture_token_attention(batch, signal=SIGNAL)


def _answer_rows(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows that predict each answer token (position - 1) and their weights 1/A, as make_capture has them."""
    n = max(e - s for s, e in batch.answer_spans)
    rows = torch.zeros((len(batch.answer_spans), n), dtype=torch.long)
    weights = torch.zeros((len(batch.answer_spans), n))
    for b, (s, e) in enumerate(batch.answer_spans):
        rows[b, : e - s] = torch.arange(s - 1, e - 1)
        weights[b, : e - s] = 1.0 / (e - s)
    return rows, weights


def eager_scores(reader, batch, signal: str = SIGNAL) -> torch.Tensor:
    """The same ``[B, L]`` teacher scores from eager ``output_attentions`` maps (model in eager mode)."""
    model = reader.model
    cfg = model.config
    n_heads, n_kv = cfg.num_attention_heads, cfg.num_key_value_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // n_heads
    groups = n_heads // n_kv
    B, L = batch.input_ids.shape
    vnorms: dict[int, torch.Tensor] = {}

    def hook(idx):
        def fn(_mod, _inp, out):  # value-norm per kv head, [B, KV, L] (the map is what costs memory)
            vnorms[idx] = out.view(B, L, n_kv, head_dim).norm(dim=-1).transpose(1, 2)
        return fn

    handles = [layer.self_attn.v_proj.register_forward_hook(hook(i))
               for i, layer in enumerate(model.model.layers)]
    try:
        with torch.no_grad(), _autocast(reader):  # the reader's precision, as its own forwards use
            out = model.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                              position_ids=batch.position_ids, use_cache=False, output_attentions=True)
            rows, weights = _answer_rows(batch)
            index = rows[:, None, :, None].expand(B, n_heads, rows.shape[1], L)
            scores = torch.zeros(B, L)
            for layer, att in enumerate(out.attentions):  # [B, H, L, L], all layers alive at once
                x = att.gather(2, index).float()  # [B, H, A, L]
                if signal == "norm":
                    x = x * vnorms[layer].repeat_interleave(groups, dim=1)[:, :, None, :]
                scores += torch.einsum("bal,ba->bl", x.mean(1), weights) / cfg.num_hidden_layers
            del out
    finally:
        for h in handles:
            h.remove()
    return scores


def eager_mode(reader) -> None:
    reader.model.set_attn_implementation("eager")


def sdpa_mode(reader) -> None:
    from attnrag.reader.capture import CAPTURE_IMPLEMENTATION

    reader.model.set_attn_implementation(CAPTURE_IMPLEMENTATION)


def methods_for(reader, batch, which=METHODS) -> dict[str, Method]:
    table = {
        "plain": Method(lambda: plain_forward(reader, batch)),
        "teacher": Method(lambda: teacher_pass(reader, batch)),
        "eager": Method(lambda: eager_scores(reader, batch), setup=lambda: eager_mode(reader),
                        teardown=lambda: sdpa_mode(reader)),
    }
    return {name: table[name] for name in which}


def compare_scores(batch, got: torch.Tensor, ref: torch.Tensor) -> dict:
    """Token-level and passage-level agreement of two ``[B, L]`` score tensors."""
    from attnrag.distill.teacher import aggregate_spans

    mask = batch.attention_mask.bool()
    got, ref = got.float(), ref.float()
    g, r = got[mask].double(), ref[mask].double()
    diff = (g - r).abs()
    # Token scores span many orders of magnitude; the relative error of near-zero entries is rounding
    # noise, so the token-level relative error counts entries above 1e-6 of the largest score.
    big = r.abs() >= 1e-6 * r.abs().max()
    pg = aggregate_spans(got, batch.passage_spans).double()
    pr = aggregate_spans(ref, batch.passage_spans).double()
    return {
        "max_abs_error": float(diff.max()),
        "max_rel_error_tokens": float((diff[big] / r[big].abs()).max()),
        "max_rel_error_passages": float(((pg - pr).abs() / pr.abs()).max()),
        "allclose_rtol1e-5_atol1e-7": bool(torch.allclose(got, ref, rtol=1e-5, atol=1e-7)),
        "padding_scores_zero": bool((got[~mask] == 0).all()),
    }


# ---------------------------------------------------------------------------------------------- memory worker
def memory_worker(method: str, k: int, tokens: int, batch_size: int, precision: str = PRECISION) -> dict:
    """In a fresh process: load, build the batch, warm the method up on a tiny input, measure one run."""
    reader = load_reader(precision)
    loaded = rss_mib()
    tiny = make_batch(reader, 1, 8, 1)
    batch = make_batch(reader, k, tokens, batch_size)
    if method == "eager":
        eager_mode(reader)
    run = methods_for(reader, batch, [method])[method].run
    warm = methods_for(reader, tiny, [method])[method].run
    warm()
    with PeakRSS() as peak:
        result = run()
    del result
    return {
        "method": method, "k": k, "tokens": tokens, "batch": batch_size,
        "seq_len": int(batch.input_ids.shape[1]), "peak_above_baseline_mib": peak.above_baseline_mib,
        "baseline_rss_mib": round(peak.baseline_kib / 1024, 2),
        "model_loaded_rss_mib": loaded, "measure": peak.method,
    }


def measure_memory(k: int, tokens: int, batch_size: int, precision: str = PRECISION,
                   methods=METHODS) -> dict:
    out = {}
    for method in methods:
        log(f"teacher_pass: peak memory {method} K={k} (subprocess)")
        out[method] = run_worker(Path(__file__), [
            "--memory-worker", method, "--k", str(k), "--tokens", str(tokens), "--batch", str(batch_size),
            "--precision", precision])
    return out


# ---------------------------------------------------------------------------------------------- the group
def run(smoke: bool = False, reader=None, precision: str = PRECISION) -> dict:
    cfg = SMOKE if smoke else FULL
    reader = reader or load_reader(precision)
    precision = getattr(reader, "precision", "fp32")
    rows = []
    for k in cfg["ks"]:
        batch = make_batch(reader, k, cfg["tokens"], cfg["batch"])
        seq_len = int(batch.input_ids.shape[1])
        methods = methods_for(reader, batch)
        # Two interleaved rounds: plain vs teacher (the 1.10x target), then plain vs eager. Eager at K=20
        # allocates and frees several GB of attention maps per run; interleaved with the other two it
        # makes whichever method runs next pay for the allocator's page faults, which is noise here.
        log(f"teacher_pass: K={k} L={seq_len} timing plain vs teacher")
        timing = time_interleaved({n: methods[n] for n in ("plain", "teacher")}, cfg["warmup"], cfg["repeats"])
        log(f"teacher_pass: K={k} L={seq_len} timing plain vs eager")
        eager_timing = time_interleaved({n: methods[n] for n in ("plain", "eager")}, cfg["warmup"],
                                        cfg["repeats"])
        timing["eager"] = eager_timing["eager"]
        timing["plain_with_eager"] = eager_timing["plain"]
        check = compare_scores(batch, methods["teacher"].last, methods["eager"].last)
        q, _, a = make_examples(reader, k, cfg["tokens"], cfg["batch"])
        row = {
            "k": k, "tokens_per_passage": cfg["tokens"], "batch": cfg["batch"], "seq_len": seq_len,
            "answer_tokens": ANSWER_TOKENS, "questions": q, "answers": a,
            "time": timing, "check_teacher_vs_eager": check,
            "time_teacher_over_plain": ratio(timing["teacher"]["median_s"], timing["plain"]["median_s"]),
            "time_teacher_over_plain_interval": paired_ratio_interval(timing["teacher"]["repeats_s"],
                                                                      timing["plain"]["repeats_s"]),
            "time_eager_over_plain": ratio(timing["eager"]["median_s"], timing["plain_with_eager"]["median_s"]),
            # Process CPU time is less sensitive to other processes on a shared machine than wall time.
            "cpu_time_teacher_over_plain": ratio(timing["teacher"]["cpu_median_s"],
                                                 timing["plain"]["cpu_median_s"]),
        }
        if cfg["memory"] and DEVICE == "cpu":
            mem = measure_memory(k, cfg["tokens"], cfg["batch"], precision)
            row["peak_memory"] = mem
            row["peak_memory_teacher_over_eager"] = ratio(mem["teacher"]["peak_above_baseline_mib"],
                                                          mem["eager"]["peak_above_baseline_mib"])
            row["peak_memory_teacher_over_plain"] = ratio(mem["teacher"]["peak_above_baseline_mib"],
                                                          mem["plain"]["peak_above_baseline_mib"])
        rows.append(row)
        del methods
    return {
        "description": "default reader fp32 CPU; timed as two interleaved pairs (plain vs teacher, plain vs "
                       "eager: time.plain_with_eager); plain = reader._hidden (SDPA, no capture), teacher = "
                       "capture_token_attention(signal='norm'), eager = output_attentions=True maps + v_proj "
                       "norms reduced to the same scores; peak memory = peak RSS of one run above the RSS "
                       "just before it (model loaded, batch built, method warmed up on a tiny input), "
                       "fresh subprocess per (method, K)",
        "config": {**cfg, "reader": READER, "signal": SIGNAL, "dtype": "float32", "device": DEVICE,
                   **reader_precision(reader)},
        "targets": TARGETS,
        "rows": rows,
        "machine": machine_info(),
    }


# ---------------------------------------------------------------------------------------------- the ratio, fp32 and bf16
RATIO_FULL = {"ks": [5, 10, 20], "tokens": 100, "batch": 1, "warmup": 2, "repeats": 15,
              "precisions": ["fp32", "bf16"]}
RATIO_SMOKE = {"ks": [2], "tokens": 24, "batch": 1, "warmup": 1, "repeats": 3, "precisions": ["fp32", "bf16"]}


def run_ratio(smoke: bool = False, readers: dict | None = None) -> dict:
    """Group ``teacher_ratio``: teacher / plain time with a 95% bootstrap interval over paired rounds,
    in fp32 and in bf16 autocast (what every experiment here runs under where the CPU has AMX).

    In bf16 the capture still computes its answer rows' softmax in fp32 inside autocast, so its extra
    work does not shrink with the rest of the forward: the ratio is expected to be larger there.
    """
    cfg = RATIO_SMOKE if smoke else RATIO_FULL
    out = {"config": {**cfg, "reader": READER, "signal": SIGNAL}, "rows": []}
    for precision in cfg["precisions"]:
        reader = (readers or {}).get(precision) or load_reader(precision)
        for k in cfg["ks"]:
            batch = make_batch(reader, k, cfg["tokens"], cfg["batch"])
            methods = methods_for(reader, batch, ("plain", "teacher"))
            log(f"teacher_ratio: {precision} K={k} L={batch.input_ids.shape[1]}, {cfg['repeats']} paired rounds")
            timing = time_interleaved(methods, cfg["warmup"], cfg["repeats"])
            out["rows"].append({
                "precision": precision, **reader_precision(reader), "k": k, "seq_len": int(batch.input_ids.shape[1]),
                "plain_median_s": timing["plain"]["median_s"], "teacher_median_s": timing["teacher"]["median_s"],
                "teacher_over_plain": paired_ratio_interval(timing["teacher"]["repeats_s"],
                                                            timing["plain"]["repeats_s"]),
                "cpu_teacher_over_plain": paired_ratio_interval(timing["teacher"]["cpu_repeats_s"],
                                                                timing["plain"]["cpu_repeats_s"]),
            })
        del reader
    out["targets"] = {"teacher_over_plain_high_at_k20_fp32_max": 1.15}
    out["machine"] = machine_info()
    return out


# ---------------------------------------------------------------------------------------------- profiling
def profile(k: int, tokens: int, batch_size: int, out_dir: Path, rows: int = 25,
            precision: str = PRECISION) -> dict:
    """torch.profiler tables of plain vs teacher on one batch: where does the teacher's extra time go?"""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    reader = load_reader(precision)
    batch = make_batch(reader, k, tokens, batch_size)
    for _ in range(2):  # warm-up
        plain_forward(reader, batch)
        teacher_pass(reader, batch)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for name, fn in (("plain", plain_forward), ("teacher", teacher_pass)):
        activities = [ProfilerActivity.CPU]
        with torch_profile(activities=activities, record_shapes=True) as prof, record_function(name):
            fn(reader, batch)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)
        path = out_dir / f"profile_{name}_k{k}_t{tokens}.txt"
        path.write_text(table)
        total = sum(e.self_cpu_time_total for e in prof.key_averages())
        summary[name] = {"self_cpu_total_ms": round(total / 1000, 2), "table": str(path)}
        print(f"==== {name} (K={k}, {tokens} tokens/passage, L={batch.input_ids.shape[1]})\n{table}")
    # Time of the capture itself: the observe() calls, measured directly.
    from attnrag.reader import capture as capture_mod

    spent = []
    original = capture_mod.AttentionCapture.observe

    def timed(self, *a, **kw):
        import time as _t

        t0 = _t.perf_counter()
        original(self, *a, **kw)
        spent.append(_t.perf_counter() - t0)

    capture_mod.AttentionCapture.observe = timed
    try:
        teacher_pass(reader, batch)
    finally:
        capture_mod.AttentionCapture.observe = original
    summary["observe_total_s"] = round(sum(spent), 6)
    summary["observe_calls"] = len(spent)
    (out_dir / f"profile_summary_k{k}_t{tokens}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--memory-worker", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--profile", action="store_true", help="profile plain vs teacher with torch.profiler")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--tokens", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--precision", default=PRECISION, help="reader precision: fp32 (default), bf16 or auto")
    ap.add_argument("--profile-dir", type=Path, default=Path(__file__).resolve().parent / "profiles")
    args = ap.parse_args(argv)
    apply_threads()
    if args.memory_worker:
        print(json.dumps(memory_worker(args.memory_worker, args.k, args.tokens, args.batch, args.precision)))
    elif args.profile:
        profile(args.k, args.tokens, args.batch, args.profile_dir, precision=args.precision)
    else:
        print(json.dumps(run(smoke=args.smoke, precision=args.precision), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
