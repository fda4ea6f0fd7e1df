"""The experiments' configurations: the paper grid's budget and rows, and the demo's budget.

Torch-free on purpose: the command line reads these dataclasses (every field documents itself with
:func:`attnrag.options.option`) to build its options, and ``attnrag --help`` should not import torch.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from ..distill.config import TEACHERS
from ..errors import InputError
from ..models import DEFAULT_RETRIEVER
from ..options import merge, option, option_specs
from ..train.config import TrainConfig


BUDGETS = ("quick", "full", "demo", "demo-quick")

#: TrainConfig fields every row sets itself (its setting, its data and run paths, the target, loss,
#: first stage and teacher its row name says): not options of the grid, refused in its config files
ROW_SET_FIELDS = ("setting", "data", "out", "index", "init_run", "first_stage", "target", "loss", "gate_fallback",
                  "teacher_answers", "retriever_training", "teacher.teacher")


def grid_training(**changes) -> TrainConfig:
    """The training every row of the ``quick`` budget starts from: TrainConfig with the grid's budget
    (sized for under an hour on 2 CPU cores), the dense first stage pinned (a row names its own:
    ``-bm25``, ``-hybrid``), evaluated at the end of each stage, no indicator logging in the trainer
    (the experiment measures every row's indicators itself), every teacher at the one temperature
    the grid's rows were measured with (``tau_gold`` 0.01: an experiment directory written before
    per-teacher temperatures stays the same experiment and resumes; ``--tau-gold`` changes it)."""
    values = {"tau_gold": 0.01, "n_passages": 3, "train_questions": 800, "reader_steps": 150, "reader_lr": 3e-4,
              "reader_trainable_layers": 8, "distill_questions": 150, "distill_steps": 120, "distill_passages": 5,
              "eval_every": None, "eval_questions": 16, "indicator_questions": 0, "first_stage": "dense"}
    return replace(TrainConfig(), **{**values, **changes})


@dataclass
class PaperConfig:
    """The experiment: the training every row starts from (a :class:`TrainConfig`, whose options are
    declared there once) and the grid's own options. ``quick`` (the defaults) is sized for under an
    hour on 2 CPU cores; ``full`` is meant for a GPU. Every field is recorded in ``results.json``.
    """

    train: TrainConfig = option(default_factory=grid_training, flatten=True, omit=ROW_SET_FIELDS, help=(
        "the training options every row starts from (TrainConfig; a row changes only what its name says)"))
    size: str = option("default", help="synthetic world size when no data directory is given: small or default")
    world_seed: int = option(0, help="seed of the generated world when no data directory is given")
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
    em_questions: int | None = option(100, help="test questions whose answers are generated for EM / F1 (null: all)")
    retrieval_questions: int | None = option(None, help=(
        "test questions the retrieval metrics are measured on (null: all; at least em_questions)"))
    generate_batch_size: int = option(16, help="questions generated per batch in the evaluation")
    max_new_tokens: int = option(12, help="longest generated answer in the evaluation")
    row_indicator_questions: int = option(100, help=(
        "dev questions each row's final reader and retriever are measured on with the paper's indicators (at "
        "most the dev split; 0: not measured; never test questions: the indicators predict the test outcome)"))
    indicator_signal: str = option("prob", help="attention signal of the indicators: prob or norm")
    relatedness: str = option("embedding", help="how answer-related tokens are found: embedding or lexical")
    with_bm25: bool = option(True, help=(
        "also measure every row's dense retriever fused with BM25 (convex hybrid, weight chosen on dev)"))

    @classmethod
    def quick(cls, **overrides) -> PaperConfig:
        return cls.from_dict(overrides)

    @classmethod
    def full(cls, **overrides) -> PaperConfig:
        values = {"train": {"n_passages": 10, "distill_passages": None, "train_questions": None, "reader_steps": 1000,
                            "reader_batch_size": 8, "reader_lr": 1e-4, "reader_trainable_layers": None,
                            "distill_questions": None, "distill_steps": 1000, "eval_questions": 64,
                            "indicator_questions": 32, "save_every": 200},
                  "fid_reader_steps": 3000, "fid_reader_lr": 1e-4, "em_questions": None, "row_indicator_questions": 1000}
        return cls.from_dict(merge(values, normalise(overrides)))

    @classmethod
    def demo(cls, quick: bool = False, **overrides) -> PaperConfig:
        """``attnrag demo``: the paper's four main rows on the embedded world in about 15 minutes on 2 CPU
        cores (``quick``: the small world, minutes). The reader gets 180 steps (its EM is the demo's
        promise), every test question is evaluated, and the indicators are left to ``attnrag analyze``
        so that the budget goes to training."""
        values = {"rows": DEMO_ROW_KEYS, "em_questions": None, "row_indicator_questions": 0, "max_new_tokens": 10,
                  "generate_batch_size": 32,
                  "train": {"reader_steps": 180, "distill_questions": 200, "eval_questions": 64,
                            "indicator_questions": 32, "eval_every": 100}}
        if quick:
            values = merge(values, {"size": "small", "em_questions": 50,
                                    "train": {"train_questions": 120, "reader_steps": 20, "distill_questions": 80,
                                              "distill_steps": 40, "eval_every": 50}})
        return cls.from_dict(merge(values, normalise(overrides)))

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
        if not isinstance(self.world_seed, int) or isinstance(self.world_seed, bool) or self.world_seed < 0:
            raise InputError(f"expected an integer >= 0, got {self.world_seed!r}", field="world_seed")
        if not isinstance(self.row_indicator_questions, int) or self.row_indicator_questions < 0:
            raise InputError(f"expected an integer >= 0, got {self.row_indicator_questions!r}",
                             field="row_indicator_questions")
        for name in ("em_questions", "retrieval_questions"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"expected an integer >= 1 or None, got {value!r}", field=name)
        for name in ("generate_batch_size", "max_new_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise InputError(f"expected an integer >= 1, got {value!r}", field=name)
        if self.retrieval_questions is not None and (
                self.em_questions is None or self.retrieval_questions < self.em_questions):
            raise InputError("retrieval_questions must cover at least the em_questions (EM) questions, got "
                             f"{self.retrieval_questions} < {self.em_questions or 'all'}", field="retrieval_questions")
        grid = grid_training()
        for path in ROW_SET_FIELDS:  # the rows set these: a config that sets them would be silently overridden
            if _get(self.train, path) != _get(grid, path):
                raise InputError(f"train.{path} is set by each row (choose rows instead), got "
                                 f"{_get(self.train, path)!r}", field=f"train.{path}")
        # the training options are TrainConfig's own checks (data and run paths are each row's)
        replace(self.train, data="<each row's>").validate()
        if self.rows is not None:
            known = [r.key for r in row_plan(self, select=False)]
            unknown = [r for r in self.rows if r not in known]
            if unknown or not self.rows:
                raise InputError(f"unknown row(s) {', '.join(unknown) or '(none given)'}; expected some of "
                                 f"{', '.join(known)}", field="rows")
        return self

    @classmethod
    def from_dict(cls, raw: dict, source: str | Path | None = None) -> PaperConfig:
        """A configuration from its dict (``to_dict``'s form, or the flat form written before the grid
        composed TrainConfig: see :func:`normalise`), every absent field at the ``quick`` default."""
        values = normalise(raw, source)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown experiment option(s) {', '.join(unknown)}; expected some of "
                             f"{', '.join(sorted(known))} (training options under 'train')",
                             path=source, field=unknown[0])
        train = values.pop("train", {})
        if not isinstance(train, dict):
            raise InputError(f"expected an object of TrainConfig options, got {train!r}", path=source, field="train")
        base = grid_training().to_dict()
        train = TrainConfig.from_dict(merge(base, train), source=str(source) if source else None)
        for name in ("teachers", "rows"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(train=train, **values)

    @classmethod
    def from_overrides(cls, budget: str, overrides: dict, source: str | Path | None = None) -> PaperConfig:
        """The budget's configuration with ``overrides`` (e.g. a JSON file's content) applied."""
        base = cls.for_budget(budget).to_dict()
        return cls.from_dict(merge(base, normalise(overrides, source)), source=source)

    def prompt(self):
        return self.train.prompt

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


#: the flat names written before PaperConfig composed TrainConfig -> where each lives now
LEGACY_NAMES = {
    **{name: ("train", name) for name in (
        "reader", "retriever", "n_passages", "train_questions", "reader_steps", "reader_batch_size", "reader_lr",
        "reader_trainable_layers", "distill_questions", "distill_steps", "distill_batch_size", "retriever_lr",
        "distractors", "distill_passages", "tau_gold", "save_every", "device", "precision")},
    "train_eval_questions": ("train", "eval_questions"),
    "train_indicator_questions": ("train", "indicator_questions"),
    "train_eval_every": ("train", "eval_every"),
    "teacher_aggregation": ("train", "teacher", "aggregation"),
    "teacher_topk_tokens": ("train", "teacher", "topk_tokens"),
    "max_passage_tokens": ("train", "prompt", "max_passage_tokens"),
    "eval_questions": ("em_questions",),
    "retrieval_eval_questions": ("retrieval_questions",),
    "indicator_questions": ("row_indicator_questions",),
}


def normalise(raw: dict, source: str | Path | None = None) -> dict:
    """``raw`` in ``to_dict``'s nested form. A flat name is read as the command line reads it
    (``reader_steps`` and ``teacher_aggregation`` are ``train.reader_steps`` and
    ``train.teacher.aggregation``), or, for configs written before the grid composed TrainConfig, as
    :data:`LEGACY_NAMES` says (``eval_questions`` was ``em_questions``). An old config is known by a
    name only it has (``train_seed``, ``train_eval_questions``, ``max_passage_tokens``, ...; every
    results.json written then holds them all): there ``seed`` was the world's and the training's seed,
    ``train_seed`` (when set) the training's alone; elsewhere ``seed`` is the training's (``train.seed``)."""
    if not isinstance(raw, dict):
        raise InputError(f"expected an object of experiment options, got {type(raw).__name__}", path=source)
    own = {f.name for f in fields(PaperConfig)}
    flags = {spec.name: spec.path for spec in option_specs(PaperConfig)}
    old_form = any(key in raw and key not in flags for key in LEGACY_NAMES) or "train_seed" in raw
    out: dict = {}
    moved: dict = {}
    for key, value in raw.items():
        if key in own or key in ("seed", "train_seed") and old_form:
            if key not in ("seed", "train_seed"):
                out[key] = value
            continue
        path = LEGACY_NAMES.get(key) if old_form or key not in flags else flags[key]
        if path is None:
            out[key] = value  # unknown: PaperConfig.from_dict names it
            continue
        node = moved
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    if old_form and ("seed" in raw or raw.get("train_seed") is not None):
        train_seed = raw["train_seed"] if raw.get("train_seed") is not None else raw["seed"]
        moved.setdefault("train", {})["seed"] = train_seed
        if "seed" in raw:
            moved["world_seed"] = raw["seed"]
    return merge(moved, out)


def flat_config(config: dict, prefix: str = "") -> dict:
    """``{"train": {"teacher": {"aggregation": ...}}}`` -> ``{"train.teacher.aggregation": ...}``: the
    fields two configurations differ in, named by their place in a config file."""
    out: dict = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _get(obj: object, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Row:
    """One row of the grid, as data: what it is called and shows, what it trains (``setting`` and the
    TrainConfig fields it changes) and which other rows' runs it uses. ``run_row`` reads nothing else."""

    key: str
    label: str
    reader: str  # "decoder" or "fid"
    teacher: str  # the teacher, as the table names it
    paper: str | None = None  # the matching setting of the paper's NQ figure
    in_default: bool = True  # run when no rows are selected (the target x loss grid runs when selected)
    setting: str | None = None  # the TrainConfig setting it trains; None: evaluated as it stands, no training
    changes: tuple[tuple[str, object], ...] = ()  # TrainConfig fields it changes from PaperConfig.train
    reader_from: str | None = None  # the row whose fine-tuned reader it reads and teaches with (Step 1)
    init_from: str | None = None  # the row whose run it starts from (Step 2)
    first_stage: str = "dense"  # an untrained row: the first stage in front of its reader
    fid_warm_start: bool = False  # its reader is the FiD warm start (PaperConfig.fid_reader or a BERT2BERT)

    @property
    def needs(self) -> tuple[str, ...]:
        """The rows whose finished runs this row uses (they run first)."""
        return tuple(dict.fromkeys(k for k in (self.reader_from, self.init_from) if k))

    @property
    def teacher_pass(self) -> tuple | None:
        """What decides this row's teacher scores apart from the shared budget: its reader, teacher
        signal, answers and candidates' first stage (not the loss, target or tower, which use the
        scores). Rows with the same pass may share one teacher cache (the trainer still checks its
        key); ``None`` for a row without a reader teacher."""
        changes = dict(self.changes)
        if self.setting is None or changes.get("target") in ("gold", "answer"):
            return None
        reader = self.reader_from or (self.key if self.setting == "finetuned-distill" else "base")
        teacher = changes.get("teacher")
        return (reader, getattr(teacher, "teacher", "attn-norm"), changes.get("teacher_answers", "gold"),
                changes.get("first_stage", "dense"))


def row_plan(cfg: PaperConfig, select: bool = True) -> list[Row]:
    """The rows in the order they run (later rows need Step 1's run); ``select``: only ``cfg.rows``
    and the rows they need."""
    step1 = {"reader_from": "step1"}
    fid_precision = "fp32" if cfg.train.precision == "bf16" else cfg.train.precision  # FiD's capture is fp32
    rows = [
        Row("offtheshelf", "Off-the-shelf checkpoint", "decoder", "-", "Off-the-shelf checkpoint"),
        Row("bm25", "BM25 (bm25s, Snowball stemmer), base reader", "decoder", "-", first_stage="bm25"),
        Row("hybrid", "BM25 + zero-shot dense, convex hybrid (weight chosen on dev), base reader", "decoder", "-",
            first_stage="hybrid"),
        Row("offtheshelf-distill", "Off-the-shelf distillation", "decoder", "attn-norm",
            "Off-the-shelf distillation", setting="offtheshelf-distill"),
        Row("step1", "Fine-tuned distillation, Step 1", "decoder", "attn-norm",
            "Fine-tuned distillation, Step 1", setting="finetuned-distill"),
        Row("reader", "Fine-tuned reader, zero-shot retriever", "decoder", "-", **step1),
        Row("step2", "Fine-tuned distillation, Step 2", "decoder", "attn-norm",
            "Fine-tuned distillation, Step 2", setting="finetuned-distill", init_from="step1"),
        Row("fid", "Encoder-decoder (FiD) distillation", "fid", "attn-norm (cross-attention)",
            "Atlas-large distillation", setting="finetuned-distill", fid_warm_start=True,
            changes=(("reader_steps", cfg.fid_reader_steps), ("reader_lr", cfg.fid_reader_lr),
                     ("reader_trainable_layers", cfg.fid_trainable_layers), ("precision", fid_precision))),
    ]
    rows += [Row(f"teacher-{t}", f"Step-1 reader, teacher {t}", "decoder", t, setting="offtheshelf-distill",
                 changes=(("teacher", replace(cfg.train.teacher, teacher=t)),), **step1) for t in cfg.teachers]
    rows += [
        variant_row("questions-only", "Step-1 reader, its own generated answers (no gold answers)",
                    "attn-norm (generated answers)"),
        variant_row("supervised", "Supervised upper bound (gold passages of the same questions, same steps)",
                    "gold passage labels"),
        variant_row("offtheshelf-distill-full", "Off-the-shelf distillation, tied retriever (both towers trained)",
                    "attn-norm"),
        variant_row("step1-full", "Step-1 reader, tied retriever (both towers trained)", "attn-norm"),
        variant_row("questions-only-full", "Step-1 reader, its own generated answers, tied retriever",
                    "attn-norm (generated answers)"),
        variant_row("supervised-full", "Supervised upper bound, tied retriever (both towers trained)",
                    "gold passage labels"),
        variant_row("answer", "DPR answer-match supervision (no reader; positive: top candidate holding an answer)",
                    "answer match"),
        variant_row("answer-full", "DPR answer-match supervision, tied retriever", "answer match"),
        variant_row("step1-bm25", "Step-1 reader, teacher scores BM25's candidates", "attn-norm"),
        variant_row("step1-bm25-full", "Step-1 reader, teacher scores BM25's candidates, tied retriever",
                    "attn-norm"),
        variant_row("step1-hybrid-full", "Step-1 reader, teacher scores the hybrid's candidates, tied retriever",
                    "attn-norm"),
        variant_row("answer-bm25-full", "DPR answer-match supervision on BM25's candidates, tied retriever",
                    "answer match"),
    ]
    # the target x loss grid (docs/method.md, "Target and loss"): the Step-1 reader on BM25's
    # candidates, tied tower; each target with KL over its own candidates and with the in-batch loss
    for base, target, label in TARGET_GRID:
        for loss, loss_label in (("kl", "KL over its own K candidates"), ("inbatch", "in-batch KL")):
            rows.append(variant_row(f"{base}-bm25-full-{loss}",
                                    f"{label} on BM25's candidates, tied retriever, {loss_label}", target,
                                    in_default=False))
    if select and cfg.rows is None:
        rows = [r for r in rows if r.in_default]
    if select and cfg.rows is not None:
        by_key = {r.key: r for r in rows}
        wanted: set[str] = set()
        todo = [k for k in cfg.rows if k in by_key]
        while todo:  # what a selected row needs runs first, and what that needs
            key = todo.pop()
            if key not in wanted:
                wanted.add(key)
                todo += list(by_key[key].needs)
        rows = [r for r in rows if r.key in wanted]
    return rows


def variant_row(key: str, label: str, teacher: str, in_default: bool = True) -> Row:
    """The row ``<base>[-bm25|-hybrid][-full][-kl|-inbatch]`` (:func:`parse_variant`) as data: the
    off-the-shelf reader's distillation for ``offtheshelf-distill``, else Step 1's reader (not trained
    again) with its base's target and teacher answers, the named first stage, tower and loss."""
    base, first_stage, full, loss = parse_variant(key)
    changes: dict = {}
    if full:  # one tied tower: the passage side learns too
        changes["retriever_training"] = "full"
    if first_stage != "dense":  # the teacher scores (and the reader reads) this first stage's passages
        changes["first_stage"] = first_stage
    changes.update(BASE_OPTIONS.get(base, {}))
    if loss is not None:
        changes["loss"] = LOSS_SUFFIXES[loss]
    return Row(key, label, "decoder", teacher, in_default=in_default, setting="offtheshelf-distill",
               changes=tuple(changes.items()), reader_from=None if base == "offtheshelf-distill" else "step1")


#: the grid's targets: (row base, the target, label); see attnrag.distill.targets
TARGET_GRID = (
    ("step1", "teacher", "Step-1 reader's attention (soft)"),
    ("answer", "answer", "DPR answer match (no reader)"),
    ("gated", "answer-gated", "Step-1 attention over answer-bearing candidates (else all)"),
    ("top1", "teacher-top1", "Step-1 reader's attention favourite (one positive)"),
    ("gated-drop", "answer-gated", "Step-1 attention over answer-bearing candidates (else left out)"),
    # the ceiling of every target above: the gold passage as the one positive, on the same questions,
    # candidates, tower and steps (needs gold passage ids a user rarely has; never a pick on dev)
    ("supervised", "gold", "Gold passage labels (the supervised bound)"),
)


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


__all__ = ["BASE_OPTIONS", "BUDGETS", "LEGACY_NAMES", "ROW_SET_FIELDS", "flat_config", "grid_training", "normalise",
           "variant_row", "DEMO_ROWS", "DEMO_ROW_KEYS", "LOSS_SUFFIXES", "RETRIEVAL_SUFFIX", "TARGET_GRID",
           "PaperConfig", "Row", "parse_variant", "row_plan"]
