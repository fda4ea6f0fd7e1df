"""benchmarks/report.py: each group's own machine and the generation table, from a hand-written results file."""

import importlib.util
import sys
from pathlib import Path

_BENCH = Path(__file__).parents[1] / "benchmarks"
sys.path.insert(0, str(_BENCH))
_SPEC = importlib.util.spec_from_file_location("bench_report", _BENCH / "report.py")
report = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(report)


def _generation_group(**extra) -> dict:
    ratio = {"median_ratio": 0.415, "low": 0.411, "high": 0.474}
    return {"config": {"questions": 64, "batch_size": 32, "max_new_tokens": 10, "precision": "fp32", "repeats": 3,
                       "warmup": 1},
            "prompt_tokens": 13429,
            "methods": {"arrival": {"median_s": 31.07, "same_answers_as_by_length": 1.0, "over_arrival": None},
                        "int8_dynamic": {"median_s": 13.93, "same_answers_as_by_length": 0.0625, "over_arrival": ratio}},
            **extra}


def test_a_group_without_its_own_machine_is_dated_by_its_own_run_not_the_files_last():
    old_run = {"commit": "a" * 40, "dirty": False, "started_at": "2026-12-06T23:05:00+00:00",
               "machine": "AMD EPYC, 2 cores, x86_64, 2 threads, torch 2.13.0+cpu", "versions": {"torch": "2.13.0+cpu"}}
    results = {"machine": {"git_commit": "b" * 40, "date": "2026-12-07T14:38:13+00:00"},
               "groups": {"bm25": {"wall_s": 1.0, "provenance": old_run},
                          "generation": _generation_group(machine={"git_commit": "c" * 40, "date": "2026-12-07"})}}
    table = report.provenance(results)
    bm25 = next(line for line in table.splitlines() if line.startswith("| bm25"))
    assert "2026-12-06T23:05:00" in bm25 and "aaaaaaaaaaaa" in bm25 and "| 2 / 2 |" in bm25
    assert "2026-12-07T14:38" not in bm25
    assert "cccccccccccc" in next(line for line in table.splitlines() if line.startswith("| generation"))


def test_generation_table_shows_ratio_interval_and_answer_agreement():
    text = report.generation(_generation_group())
    assert "| `int8_dynamic` | 13.93 s | 0.415 [0.411, 0.474] | 0.062 |" in text
    assert "| `arrival` | 31.07 s | – | 1.000 |" in text


def test_kernels_table_shows_each_workloads_ratio_compile_time_and_agreement():
    ratio = {"median_ratio": 0.928, "low": 0.797, "high": 1.001}
    group = {"config": {"questions": 64, "batch_size": 32, "max_new_tokens": 10, "chunk": 4, "candidates": 5,
                        "trainable_layers": 8, "precision": "fp32", "repeats": 3, "short_repeats": 8, "warmup": 1},
             "workloads": {
                 "generation": {"compile_s": 138.46, "dynamo": {"graphs": 1, "graph_breaks": 0},
                                "methods": {"eager": {"median_s": 31.27, "same_as_eager": 1.0, "over_eager": None},
                                            "compiled": {"median_s": 27.81, "same_as_eager": 1.0, "over_eager": ratio}}},
                 "train_step": {"compile_s": 7.27, "dynamo": {"graphs": 1, "graph_breaks": 0},
                                "methods": {"eager": {"median_s": 2.36, "over_eager": None,
                                                      "same_as_eager": {"loss_abs": 0.0, "grad_norm_rel": 0.0}},
                                            "compiled": {"median_s": 2.15, "over_eager": ratio,
                                                         "same_as_eager": {"loss_abs": 1.4e-6, "grad_norm_rel": 1.3e-6}}}}}}
    text = report.kernels(group)
    assert "| generation | `compiled` | 27.81 s | 0.928x [0.797, 1.001] | 1.000 | 138.46 s | 1 graph(s), 0 break(s) |" in text
    assert "| generation | `eager` | 31.27 s | 1 | 1.000 | – | – |" in text
    assert "loss_abs 1.4e-06, grad_norm_rel 1.3e-06 | 7.27 s" in text
    assert "median of 3 (generation) or 8 interleaved rounds" in text


def test_tied_step_table_shows_the_bf16_ratio_and_how_far_its_loss_and_gradient_moved():
    ratio = {"median_ratio": 0.61, "low": 0.55, "high": 0.70}
    group = {"config": {"questions": 8, "candidates": 10, "warmup": 2, "repeats": 10, "source": "tweetqa-open"},
             "passages": 80, "passage_tokens": 4321,
             "methods": {"fp32": {"median_s": 2.2, "loss_abs_diff": 0.0, "grad_norm_rel_diff": 0.0, "over_fp32": None},
                         "bf16_autocast": {"median_s": 1.34, "loss_abs_diff": 0.0031, "grad_norm_rel_diff": 0.012,
                                           "over_fp32": ratio}}}
    text = report.tied_step(group)
    assert "| `bf16_autocast` | 1.34 s | 0.610x [0.550, 0.700] | 3.1e-03 | 1.2e-02 |" in text
    assert "| `fp32` | 2.20 s | 1 | 0.0e+00 | 0.0e+00 |" in text
    assert "80 passages, 4,321 passage tokens" in text
