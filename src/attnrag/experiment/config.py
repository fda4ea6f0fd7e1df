"""The experiments' configurations: the paper grid's budget and rows, and the demo's budget.

Torch-free on purpose: the command line reads these dataclasses (every field documents itself with
:func:`attnrag.options.option`) to build its options, and ``attnrag --help`` should not import torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..distill.config import TEACHERS, TeacherConfig
from ..errors import InputError
from ..models import DEFAULT_READER, DEFAULT_RETRIEVER
from ..options import option


BUDGETS = ("quick", "full", "demo", "demo-quick")


@dataclass
class PaperConfig:
    """The experiment's budget and models. ``quick`` (the defaults) is sized for under an hour on 2 CPU
    cores; ``full`` is meant for a GPU. Every field is recorded in ``results.json``.
    """

    size: str = option("default", help="synthetic world size when no data directory is given: small or default")
    reader: str = option(DEFAULT_READER, help="decoder-only reader every row starts from: registry name or model directory")
    retriever: str = option(DEFAULT_RETRIEVER, help="retriever every row starts from: registry name or model directory")
    n_passages: int = option(3, help="K passages the reader reads and is evaluated with")
    train_questions: int | None = option(800, help="training questions of reader fine-tuning (null: all)")
    reader_steps: int = option(150, help="reader fine-tuning steps (Step 1 and the teacher rows)")
    reader_batch_size: int = option(4, help="questions per reader step")
    reader_lr: float = option(3e-4, help="reader learning rate")
    reader_trainable_layers: int | None = option(8, help="fine-tune the top N decoder blocks (null: all)")
    distill_questions: int | None = option(150, help="training questions the teacher scores (null: all)")
    distill_steps: int = option(120, help="retriever training steps of every distillation row")
    distill_batch_size: int = option(32, help="questions per retriever step")
    retriever_lr: float = option(5e-5, help="retriever learning rate")
    fid_encoder: str = option(DEFAULT_RETRIEVER, help="checkpoint the FiD reader is warm-started from (encoder and decoder)")
    fid_reader: str | None = option(None, help="an encoder-decoder model directory to use instead of the warm start")
    fid_reader_steps: int = option(150, help=(
        "reader fine-tuning steps of the FiD row (its cross-attention starts random, so it gets more)"))
    fid_reader_lr: float = option(3e-4, help="reader learning rate of the FiD row")
    fid_trainable_layers: int | None = option(None, help="trainable layers of the FiD reader (null: all)")
    teachers: tuple[str, ...] = option(("attn", "attn-logits", "pdist", "loop", "emdr"), help=(
        "the alternative teachers, one teacher-<name> row each (comma-separated)"))
    rows: tuple[str, ...] | None = option(None, help=(
        "the rows to run, comma-separated (null: all); a row that needs another row's run (Step 1's reader) runs it first"))
    distractors: str | None = option(None, help=(
        "extra passages added to the corpus (e.g. real Wikipedia passages); the index covers both"))
    distill_passages: int | None = option(5, help="K candidates the teacher scores during distillation (null: n_passages)")
    max_passage_tokens: int = option(64, help=(
        "per-passage token budget of the decoder-only prompt (64 fits the synthetic passages; 100-word "
        "Wikipedia passages need about 160)"))
    eval_questions: int | None = option(100, help="test questions whose answers are generated for EM / F1 (null: all)")
    retrieval_eval_questions: int | None = option(None, help=(
        "test questions the retrieval metrics are measured on (null: all; at least eval_questions)"))
    generate_batch_size: int = option(16, help="questions generated per batch in the evaluation")
    teacher_aggregation: str = option("sum", help="attention teachers: sum, mean or topk over a passage's tokens")
    teacher_topk_tokens: int = option(5, help="k of the topk aggregation")
    tau_gold: float = option(0.01, help="temperature of the teacher distribution")
    indicator_questions: int = option(100, help=(
        "dev questions the indicators are measured on (at most the dev split; 0: not measured; never test "
        "questions: the indicators predict the test outcome)"))
    indicator_signal: str = option("prob", help="attention signal of the indicators: prob or norm")
    relatedness: str = option("embedding", help="how answer-related tokens are found: embedding or lexical")
    max_new_tokens: int = option(12, help="longest generated answer in the evaluation")
    train_eval_questions: int = option(16, help="dev questions of the trainer's own evaluations")
    train_eval_every: int | None = option(None, help="the trainer evaluates every N steps (null: at the end of each stage)")
    train_indicator_questions: int = option(0, help=(
        "dev questions of the trainer's own indicator logging (0: the experiment measures them on test anyway)"))
    save_every: int = option(50, help="checkpoint every N steps")
    seed: int = option(0, help="seed of the generated world (and of the training, unless train_seed is set)")
    train_seed: int | None = option(None, help=(
        "seed of every row's training alone (null: seed): vary it to measure training variance on one world"))
    device: str = option("auto", help="auto (CUDA when available), cpu or cuda[:i]")
    precision: str = option("auto", help=(
        "decoder readers' matmul precision in training and evaluation: auto (bf16 autocast where the CPU or "
        "GPU has native bf16, else fp32), fp32 or bf16; the FiD row always runs fp32"))
    with_bm25: bool = option(True, help=(
        "also measure every row's dense retriever fused with BM25 (convex hybrid, weight chosen on dev)"))

    @classmethod
    def quick(cls, **overrides) -> PaperConfig:
        return cls(**overrides)

    @classmethod
    def full(cls, **overrides) -> PaperConfig:
        values = {"n_passages": 10, "distill_passages": None, "train_questions": None, "reader_steps": 1000,
                  "reader_batch_size": 8, "reader_lr": 1e-4, "reader_trainable_layers": None,
                  "distill_questions": None, "distill_steps": 1000,
                  "fid_reader_steps": 3000, "fid_reader_lr": 1e-4, "eval_questions": None,
                  "indicator_questions": 1000, "train_eval_questions": 64, "train_indicator_questions": 32,
                  "save_every": 200}
        return cls(**{**values, **overrides})

    @classmethod
    def demo(cls, quick: bool = False, **overrides) -> PaperConfig:
        """``attnrag demo``: the paper's four main rows on the embedded world in about 15 minutes on 2 CPU
        cores (``quick``: the small world, minutes). The reader gets 180 steps (its EM is the demo's
        promise), every test question is evaluated, and the indicators are left to ``attnrag analyze``
        so that the budget goes to training."""
        values = {"rows": DEMO_ROW_KEYS, "reader_steps": 180, "distill_questions": 200, "eval_questions": None,
                  "indicator_questions": 0, "max_new_tokens": 10, "generate_batch_size": 32,
                  "train_eval_questions": 64, "train_indicator_questions": 32, "train_eval_every": 100}
        if quick:
            values.update({"size": "small", "train_questions": 120, "reader_steps": 20, "distill_questions": 80,
                           "distill_steps": 40, "eval_questions": 50, "train_eval_every": 50})
        return cls(**{**values, **overrides})

    @classmethod
    def for_budget(cls, budget: str) -> PaperConfig:
        if budget not in BUDGETS:
            raise InputError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}", field="budget")
        if budget.startswith("demo"):
            return cls.demo(quick=budget == "demo-quick")
        return cls.quick() if budget == "quick" else cls.full()

    def validate(self) -> PaperConfig:
        # types first: a string would otherwise be checked one character at a time
        for name in ("teachers", "rows"):
            value = getattr(self, name)
            if name == "rows" and value is None:
                continue
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise InputError(f"expected a list of names, got {value!r}", field=name)
        for name in self.teachers:
            if name not in TEACHERS:
                raise InputError(f"unknown teacher {name!r}; expected some of {', '.join(TEACHERS)}",
                                 field="teachers")
        for name in ("seed", "train_seed"):
            value = getattr(self, name)
            if not (value is None and name == "train_seed") and (
                    not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise InputError(f"expected an integer >= 0{' or null' if name == 'train_seed' else ''}, "
                                 f"got {value!r}", field=name)
        if not isinstance(self.indicator_questions, int) or self.indicator_questions < 0:
            raise InputError(f"expected an integer >= 0, got {self.indicator_questions!r}",
                             field="indicator_questions")
        if self.train_eval_every is not None and (not isinstance(self.train_eval_every, int)
                                                  or self.train_eval_every < 1):
            raise InputError(f"expected an integer >= 1 or null, got {self.train_eval_every!r}",
                             field="train_eval_every")
        for name in ("eval_questions", "retrieval_eval_questions", "distill_passages"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"expected an integer >= 1 or None, got {value!r}", field=name)
        for name in ("generate_batch_size", "max_new_tokens", "n_passages"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"expected an integer >= 1, got {value!r}", field=name)
        if self.retrieval_eval_questions is not None and (
                self.eval_questions is None or self.retrieval_eval_questions < self.eval_questions):
            raise InputError("retrieval_eval_questions must cover at least the eval_questions (EM) questions, got "
                             f"{self.retrieval_eval_questions} < {self.eval_questions or 'all'}",
                             field="retrieval_eval_questions")
        try:
            TeacherConfig(aggregation=self.teacher_aggregation, topk_tokens=self.teacher_topk_tokens)
        except ValueError as exc:
            raise InputError(str(exc), field="teacher_aggregation") from exc
        if self.precision not in ("auto", "fp32", "bf16"):
            raise InputError(f"expected auto, fp32 or bf16, got {self.precision!r}", field="precision")
        if not self.tau_gold > 0:
            raise InputError(f"expected a temperature > 0, got {self.tau_gold!r}", field="tau_gold")
        if not isinstance(self.max_passage_tokens, int) or self.max_passage_tokens < 8:
            raise InputError(f"expected an integer >= 8, got {self.max_passage_tokens!r}",
                             field="max_passage_tokens")
        if self.rows is not None:
            known = [r.key for r in row_plan(self, select=False)]
            unknown = [r for r in self.rows if r not in known]
            if unknown or not self.rows:
                raise InputError(f"unknown row(s) {', '.join(unknown) or '(none given)'}; expected some of "
                                 f"{', '.join(known)}", field="rows")
        return self

    @classmethod
    def from_overrides(cls, budget: str, overrides: dict, source: str | Path | None = None) -> PaperConfig:
        """The budget's configuration with ``overrides`` (e.g. a JSON file's content) applied."""
        base = asdict(cls.for_budget(budget))
        unknown = sorted(set(overrides) - set(base))
        if unknown:
            raise InputError(f"unknown experiment option(s) {', '.join(unknown)}; expected some of "
                             f"{', '.join(sorted(base))}", path=source, field=unknown[0])
        values = {**base, **overrides}
        for name in ("teachers", "rows"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)

    def prompt(self):
        from ..reader.prompt import PromptConfig

        return PromptConfig(max_passage_tokens=self.max_passage_tokens)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


@dataclass
class Row:
    key: str
    label: str
    reader: str  # "decoder" or "fid"
    teacher: str
    paper: str | None = None  # the matching setting of the paper's NQ figure
    in_default: bool = True  # run when no rows are selected (the target x loss grid runs when selected)


def row_plan(cfg: PaperConfig, select: bool = True) -> list[Row]:
    """The rows in the order they run (later rows need Step 1's run); ``select``: only ``cfg.rows``."""
    rows = [
        Row("offtheshelf", "Off-the-shelf checkpoint", "decoder", "-", "Off-the-shelf checkpoint"),
        Row("bm25", "BM25 (bm25s, Snowball stemmer), base reader", "decoder", "-"),
        Row("hybrid", "BM25 + zero-shot dense, convex hybrid (weight chosen on dev), base reader", "decoder", "-"),
        Row("offtheshelf-distill", "Off-the-shelf distillation", "decoder", "attn-norm",
            "Off-the-shelf distillation"),
        Row("step1", "Fine-tuned distillation, Step 1", "decoder", "attn-norm",
            "Fine-tuned distillation, Step 1"),
        Row("reader", "Fine-tuned reader, zero-shot retriever", "decoder", "-"),
        Row("step2", "Fine-tuned distillation, Step 2", "decoder", "attn-norm",
            "Fine-tuned distillation, Step 2"),
        Row("fid", "Encoder-decoder (FiD) distillation", "fid", "attn-norm (cross-attention)",
            "Atlas-large distillation"),
    ]
    rows += [Row(f"teacher-{t}", f"Step-1 reader, teacher {t}", "decoder", t) for t in cfg.teachers]
    rows += [
        Row("questions-only", "Step-1 reader, its own generated answers (no gold answers)", "decoder",
            "attn-norm (generated answers)"),
        Row("supervised", "Supervised upper bound (gold passages of the same questions, same steps)", "decoder",
            "gold passage labels"),
        Row("offtheshelf-distill-full", "Off-the-shelf distillation, tied retriever (both towers trained)",
            "decoder", "attn-norm"),
        Row("step1-full", "Step-1 reader, tied retriever (both towers trained)", "decoder", "attn-norm"),
        Row("questions-only-full", "Step-1 reader, its own generated answers, tied retriever", "decoder",
            "attn-norm (generated answers)"),
        Row("supervised-full", "Supervised upper bound, tied retriever (both towers trained)", "decoder",
            "gold passage labels"),
        Row("answer", "DPR answer-match supervision (no reader; positive: top candidate holding an answer)",
            "decoder", "answer match"),
        Row("answer-full", "DPR answer-match supervision, tied retriever", "decoder", "answer match"),
        Row("step1-bm25", "Step-1 reader, teacher scores BM25's candidates", "decoder", "attn-norm"),
        Row("step1-bm25-full", "Step-1 reader, teacher scores BM25's candidates, tied retriever", "decoder",
            "attn-norm"),
        Row("step1-hybrid-full", "Step-1 reader, teacher scores the hybrid's candidates, tied retriever",
            "decoder", "attn-norm"),
        Row("answer-bm25-full", "DPR answer-match supervision on BM25's candidates, tied retriever", "decoder",
            "answer match"),
    ]
    # the target x loss grid (docs/method.md, "Target and loss"): the Step-1 reader on BM25's
    # candidates, tied tower; each target with KL over its own candidates and with the in-batch loss
    for base, target, label in TARGET_GRID:
        for loss, loss_label in (("kl", "KL over its own K candidates"), ("inbatch", "in-batch KL")):
            rows.append(Row(f"{base}-bm25-full-{loss}", f"{label} on BM25's candidates, tied retriever, {loss_label}",
                            "decoder", target, in_default=False))
    if select and cfg.rows is None:
        rows = [r for r in rows if r.in_default]
    if select and cfg.rows is not None:
        wanted = set(cfg.rows)
        wanted |= {need for key in cfg.rows for need in row_needs(key)}  # what a selected row needs runs first
        rows = [r for r in rows if r.key in wanted]
    return rows


#: the grid's targets: (row base, the target, label); see attnrag.distill.targets
TARGET_GRID = (
    ("step1", "teacher", "Step-1 reader's attention (soft)"),
    ("answer", "answer", "DPR answer match (no reader)"),
    ("gated", "answer-gated", "Step-1 attention over answer-bearing candidates (else all)"),
    ("top1", "teacher-top1", "Step-1 reader's attention favourite (one positive)"),
    ("gated-drop", "answer-gated", "Step-1 attention over answer-bearing candidates (else left out)"),
)

#: rows that need no other row's run
INDEPENDENT_ROWS = ("offtheshelf", "bm25", "hybrid", "offtheshelf-distill", "step1", "fid")


def row_needs(key: str) -> tuple[str, ...]:
    """The rows whose runs ``key`` uses: Step 1's reader for every row that reads or teaches with it."""
    if key in INDEPENDENT_ROWS or key.startswith("offtheshelf-distill"):
        return ()
    return ("step1",)


RETRIEVAL_SUFFIX = ".retrieval.jsonl"  # predictions/<row><suffix>: top-K ids of every retrieval question
FIRST_STAGES = ("bm25", "hybrid")
VARIANT_BASES = ("offtheshelf-distill", "step1", "questions-only", "supervised", "answer", "top1", "gated",
                 "gated-drop")
#: what each variant base sets in TrainConfig (the Step-1 reader's soft attention when absent)
BASE_OPTIONS = {"questions-only": {"teacher_answers": "generated"}, "supervised": {"target": "gold"},
                "answer": {"target": "answer"}, "top1": {"target": "teacher-top1"},
                "gated": {"target": "answer-gated"}, "gated-drop": {"target": "answer-gated", "gate_fallback": "drop"}}
LOSS_SUFFIXES = {"kl": "candidates", "inbatch": "in-batch"}


def parse_variant(key: str) -> tuple[str, str, bool, str | None] | None:
    """``<base>[-bm25|-hybrid][-full][-kl|-inbatch]`` -> ``(base, first_stage, full, loss)``; ``None``
    for other keys.

    ``-bm25`` / ``-hybrid``: the teacher's candidates (and the reader's passages) come from BM25 or the
    dev-tuned hybrid; ``-full``: one tied tower is trained; ``-kl`` / ``-inbatch``: the loss (KL over
    the question's own candidates, or over every passage of the batch; absent: the target's own,
    TrainConfig.resolved_loss). Bases: the Step-1 reader's soft attention (``step1``), its favourite
    as one positive (``top1``), attention renormalised over answer-bearing candidates (``gated``;
    ``gated-drop`` leaves out questions with none), DPR answer match (``answer``), gold labels
    (``supervised``), the off-the-shelf reader (``offtheshelf-distill``), generated answers
    (``questions-only``). ``answer`` alone is a variant too (the dense first stage, the query tower);
    ``step1`` alone is not (it also fine-tunes the reader).
    """
    loss = next((suffix for suffix in LOSS_SUFFIXES if key.endswith(f"-{suffix}")), None)
    rest = key.removesuffix(f"-{loss}") if loss else key
    full = rest.endswith("-full")
    rest = rest.removesuffix("-full")
    first_stage = next((f for f in FIRST_STAGES if rest.endswith(f"-{f}")), "dense")
    base = rest.removesuffix(f"-{first_stage}") if first_stage != "dense" else rest
    if base not in VARIANT_BASES or (base == "step1" and first_stage == "dense" and not full and loss is None):
        return None
    return base, first_stage, full, loss


#: the demo's rows, in the order its table shows them (``reader`` is Step 1's reader with the
#: zero-shot retriever: the demo fine-tunes the reader once)
DEMO_ROW_KEYS = ("offtheshelf", "offtheshelf-distill", "step1", "reader")
DEMO_ROWS = (
    ("offtheshelf", "Off-the-shelf checkpoint"),
    ("offtheshelf-distill", "Off-the-shelf distillation"),
    ("reader", "Fine-tuned reader, zero-shot retriever"),
    ("step1", "Fine-tuned distillation"),
)


__all__ = ["BASE_OPTIONS", "BUDGETS", "DEMO_ROWS", "DEMO_ROW_KEYS", "LOSS_SUFFIXES", "RETRIEVAL_SUFFIX", "TARGET_GRID",
           "PaperConfig", "Row", "parse_variant", "row_needs", "row_plan"]
