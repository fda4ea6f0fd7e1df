"""Every training option in one place (in the spirit of transformers' ``TrainingArguments``).

A run directory stores this config as ``config.json``; ``--resume`` reloads it from there, so a
resumed run cannot silently change its settings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..distill.config import TeacherConfig
from ..errors import InputError
from ..models import DEFAULT_READER, DEFAULT_RETRIEVER
from ..options import option
from ..reader.prompt import PromptConfig
from ..retrieval.fusion import FusionConfig

SETTINGS = ("reader", "offtheshelf-distill", "finetuned-distill", "joint")
#: questions per pilot step of a tied tower when ``pilot_batch_size`` is null: its steps re-embed every
#: candidate with gradient, so the pilot takes a quarter of the default run's 32 and stays near a tenth
#: of a short run's cost (measured: docs/results/pilot-validation/repilot-b8/)
TIED_PILOT_BATCH_SIZE = 8

STAGES_OF_SETTING = {
    "reader": ("reader",),
    "offtheshelf-distill": ("distill",),
    "finetuned-distill": ("reader", "distill"),
    "joint": ("joint",),
}


@dataclass
class TrainConfig:
    """Options of ``attnrag train``; names follow the paper's settings.

    Settings (``setting``):
        ``reader``: fine-tune the reader on retrieved passages; the retriever stays fixed.
        ``offtheshelf-distill``: distil the retriever from the un-fine-tuned reader's attention.
        ``finetuned-distill``: fine-tune the reader, then distil the retriever from it.
        ``joint``: both losses at every step (ATLAS): retrieve, teacher-score, LM + distillation.

    Retriever training (``retriever_training``):
        ``query``: train the query tower; the passage tower is a frozen copy, so the index stays
            valid and is never refreshed (the default, and ATLAS's cheap mode).
        ``full``: train both towers (tied, one model, as sentence-transformers fine-tunes it). Cached
            distillation and the supervised bound re-embed each batch's cached candidates with
            gradient and re-encode the corpus before each evaluation and at the end; online
            distillation re-encodes it on ``refresh_schedule``. The passage side then adapts to the
            corpus, test passages included, which the frozen tower of ``query`` cannot.
    ``distill_passages`` is the number of retrieved candidates the teacher scores and the retriever
    is trained over (default: ``n_passages``). More candidates than the reader reads keep the gold
    passage among them more often, so the retriever is not pushed towards a wrong passage when the
    gold one was not retrieved.
    Retriever scores (``retriever_similarity``, ``tau_score``, ``scale_by_dim``): the retriever is
    scored with the similarity its model directory declares (cosine for all-MiniLM-L6-v2, dot for a
    Contriever-style model); ``retriever_similarity`` overrides it. ``tau_score`` is the student's
    temperature (``None``: 0.02 for cosine, 0.01 for dot) and ``scale_by_dim`` ATLAS's division of
    dot products by sqrt(dim) (``None``: on for dot, off for cosine); see
    :func:`attnrag.distill.loss.student_temperature`.
    Teacher answers (``teacher_answers``): ``gold`` teacher-forces the gold answer; ``generated`` is for
    users with questions but no answers (a query log): the reader generates its answer from the
    candidates and the attention of those generated tokens is the teacher.
    Target and loss (``target``, ``loss``; :mod:`attnrag.distill.targets`, :mod:`attnrag.distill.loss`):
    what the retriever is taught over each question's candidates, and how. Targets: ``teacher`` (the
    reader's scores as a soft distribution, the default); ``teacher-top1`` (its favourite as the one
    positive); ``answer`` (DPR's distant supervision, no reader: the highest-ranked candidate whose
    text contains a gold answer is the positive, the other answer-bearing candidates are left out,
    questions without one are left out and counted); ``answer-gated`` (the teacher renormalised over
    the answer-bearing candidates; questions with none follow ``gate_fallback``: ``teacher`` or
    ``drop``); ``gold`` (the supervised upper bound, gold passages of the same questions for the same
    steps). Losses: ``candidates`` (KL over the question's own K candidates, FiD-KD / ATLAS),
    ``in-batch`` (KL, i.e. cross-entropy for one positive, over every passage of the batch: DPR's and
    sentence-transformers' in-batch negatives) and ``emdr`` (EMDR2's marginal likelihood, only with
    the ``emdr`` teacher). ``loss`` null takes the target's conventional one: ``emdr`` for the emdr
    teacher, ``candidates`` for the soft targets (``teacher``, ``answer-gated``), ``in-batch`` for
    one positive (``teacher-top1``, ``answer``, ``gold``).
    First stage (``first_stage``): where the reader's passages and the teacher's candidates come
    from. Null (the default): the dev-tuned hybrid where the data has a dev split (the first stage the
    committed dev evidence picks: docs/results/first-stage), else ``dense``, said in one line and
    recorded in ``first_stage.json``. ``dense`` (the retriever being trained), ``bm25`` (a BM25 index over the same passages,
    built in memory with :mod:`attnrag.retrieval.lexical`), or ``hybrid`` (BM25 fused with the dense
    retriever, a convex mix of min-max normalised scores over the top ``hybrid.depth`` of each side;
    FiD-KD's first round starts from BM25). The dense retriever is always what trains; the hybrid
    always holds its current weights, so Step 2 retrieves with the hybrid of Step 1's retriever.
    ``hybrid.weight`` is BM25's share (null: chosen on the dev split's recall@1 with the starting
    retriever, logged, and kept in ``first_stage.json`` so a resumed run uses the same one).
    Distillation mode (``distill_mode``):
        ``cached``: FiD-KD order: retrieve K candidates per training question once, score them with
            the teacher once, then train the retriever on the cached scores (teacher cost paid once).
        ``online``: ATLAS order: every step retrieves with the current retriever and re-scores.
            Forced for ``joint``.
    """

    # ------------------------------------------------------------------ what to train, on what
    setting: str = option("finetuned-distill", help=(
        "reader | offtheshelf-distill | finetuned-distill | joint (see the class docstring)"))
    data: str = option("", help="directory with passages.jsonl (or *.tsv) and train/dev/test jsonl")
    out: str = option("", help="run directory (config.json, metrics.jsonl, checkpoints, reader/, retriever/)")
    distractors: str | None = option(None, help="extra passages added to the corpus (jsonl or tsv)")
    index: str | None = option(None, help="prebuilt index of the base retriever (skips encoding the corpus)")
    reader: str = option(DEFAULT_READER, help="reader: registry name or model directory")
    retriever: str = option(DEFAULT_RETRIEVER, help="retriever: registry name or model directory")
    init_run: str | None = option(None, help="start from this run's reader and retriever (Step 2)")

    n_passages: int = option(5, help="K passages the reader reads (and is fine-tuned and evaluated on)")
    train_questions: int | None = option(None, help="use the first N training questions (seeded subset; null: all)")

    # ------------------------------------------------------------------ reader fine-tuning
    reader_steps: int = option(150, help="optimiser steps of reader fine-tuning")
    reader_batch_size: int = option(4, help="questions per reader step")
    reader_lr: float = option(5e-5, help="reader learning rate (AdamW)")
    reader_trainable_layers: int | None = option(12, help="fine-tune the top N decoder blocks (null: all)")

    # ------------------------------------------------------------------ retriever distillation
    distill_steps: int = option(200, help="optimiser steps of retriever training")
    distill_batch_size: int = option(32, help="questions per retriever step")
    distill_questions: int | None = option(None, help=(
        "training questions the teacher scores (seeded subset; null: all of train_questions)"))
    distill_mode: str = option("cached", help=(
        "cached (FiD-KD: teacher scores computed once) or online (ATLAS: re-retrieve and re-score every step)"))
    distill_passages: int | None = option(None, help=(
        "K candidates the teacher scores and the retriever is trained over (null: n_passages)"))
    retriever_lr: float = option(5e-5, help="retriever learning rate (AdamW)")
    pilot_steps: int = option(30, help=(
        "cached distillation: steps of the pilot run before it (a copy of the retriever on the first "
        "pilot_questions, compared on dev answer recall, then discarded; 0: no pilot)"))
    pilot_questions: int = option(64, help="distillation questions the pilot trains on")
    pilot_batch_size: int | None = option(None, help=(
        "questions per pilot step (null: the run's distill_batch_size for a query tower, whose steps are "
        "cheap; 8 for a tied tower, whose steps re-embed every candidate with gradient and cost 10-40x as much: "
        "docs/results/pilot-validation/repilot-b8/)"))
    pilot_dev_questions: int = option(300, help="dev questions the pilot compares the retriever on, before and after")
    pilot_pool: int = option(20, help=(
        "tied tower: the pilot's dev comparison re-ranks each dev question's top N of the starting "
        "retriever, re-encoding only those passages instead of the corpus (before = the index's own top, so "
        "the pair stays exact on that side); 0: re-encode the whole corpus after the pilot"))
    pilot_only: bool = option(False, help=(
        "run the targets (teacher pass) and the pilot, log them, and stop: the retriever is left as it was "
        "(diagnose --pilot and the pilot's validation run this)"))
    retriever_training: str = option("query", help=(
        "query (train the query tower; the passage tower is a frozen copy, the index stays valid) or full "
        "(one tied tower for queries and passages; the corpus is re-encoded)"))
    refresh_schedule: str = option("0-1000:500,1000-10000:2000", help=(
        "full retriever training: re-encode the corpus every N steps in each span, 'start-end:N,...' (ATLAS)"))
    retriever_similarity: str | None = option(None, flag="--similarity", help=(
        "cosine or dot: override the similarity the retriever's model directory declares"))
    tau_gold: float | None = option(None, help=(
        "temperature of the teacher distribution softmax(scores / tau_gold) (null: the teacher's own, "
        "distill.config.TEACHER_TAU: 0.01 for attn-norm)"))
    tau_score: float | None = option(None, help="student temperature (null: 0.02 for cosine retrievers, 0.01 for dot)")
    scale_by_dim: bool | None = option(None, help=(
        "divide dot products by sqrt(dim), as ATLAS does (null: on for dot, off for cosine)"))
    teacher: TeacherConfig = option(default_factory=TeacherConfig, help="how the reader scores passages")
    teacher_answers: str = option("gold", help=(
        "gold (teacher-force the gold answer) or generated (questions without answers: the reader's own answer)"))
    target: str = option("teacher", help=(
        "teacher (the reader's soft scores), teacher-top1 (its favourite as the one positive), answer (DPR "
        "answer match, no reader), answer-gated (the teacher renormalised over answer-bearing candidates) or "
        "gold (the supervised upper bound)"))
    loss: str | None = option(None, help=(
        "candidates (KL over the question's own K candidates), in-batch (KL / cross-entropy over every "
        "passage of the batch) or emdr (emdr teacher only); null: the target's conventional loss"))
    gate_fallback: str = option("teacher", help=(
        "answer-gated target, a question with no answer-bearing candidate: teacher (soft teacher over all K) "
        "or drop (left out)"))
    first_stage: str | None = option(None, help=(
        "dense, bm25 or hybrid: where the reader's passages and the teacher's candidates come from (the dense "
        "retriever is what trains); null: the dev-tuned hybrid where the data has a dev split (best on dev on "
        "every set measured), else dense"))
    hybrid: FusionConfig = option(default_factory=FusionConfig, help=(
        "the hybrid first stage's fusion (--hybrid-fusion, --hybrid-weight: null is chosen on the dev split, "
        "--hybrid-depth)"))

    # ------------------------------------------------------------------ joint training (ATLAS)
    joint_steps: int = option(150, help="optimiser steps of the joint setting (reader and retriever together)")
    joint_batch_size: int = option(4, help="questions per joint step")

    # ------------------------------------------------------------------ optimisation
    warmup_ratio: float = option(0.1, help="share of each stage's steps spent warming the learning rate up from 0")
    scheduler: str = option("linear", help="learning-rate decay after warm-up: linear, cosine or constant")
    weight_decay: float = option(0.01, help="AdamW weight decay")
    max_grad_norm: float = option(1.0, help="gradient clipping norm")
    grad_accumulation: int = option(1, help="micro-batches per optimiser step")
    seed: int = option(0, help="seed of data order, subsets and initialisation")

    # ------------------------------------------------------------------ bookkeeping
    eval_every: int | None = option(50, help=(
        "evaluate on dev every N steps and at the end of each stage (null: at the end of each stage only)"))
    eval_questions: int = option(64, help="dev questions of each evaluation")
    indicator_questions: int = option(32, help="dev questions the paper's indicators are logged on (0: none)")
    save_every: int = option(50, help="checkpoint every N steps (a killed run resumes from the last one)")
    max_bad_steps: int = option(10, help="consecutive non-finite steps that stop the run")
    device: str = option("auto", help="auto (CUDA when available), cpu or cuda[:i]")
    precision: str = option("auto", help=(
        "auto (bf16 autocast where the hardware runs it natively: CUDA with bf16, CPUs with AMX or "
        "AVX512-BF16; fp32 elsewhere), fp32 or bf16"))
    prompt: PromptConfig = option(default_factory=PromptConfig, help="the reader's prompt layout and token budgets")

    @property
    def stages(self) -> tuple[str, ...]:
        return STAGES_OF_SETTING[self.setting]

    @property
    def resolved_pilot_batch_size(self) -> int:
        """``pilot_batch_size``, or the tower's default where it is null (see its help)."""
        if self.pilot_batch_size is not None:
            return self.pilot_batch_size
        return TIED_PILOT_BATCH_SIZE if self.retriever_training == "full" else self.distill_batch_size

    @property
    def teacher_tau(self) -> float:
        """``tau_gold``, or the teacher's own temperature where it is null (each signal has its scale)."""
        from ..distill.config import TEACHER_TAU

        return self.tau_gold if self.tau_gold is not None else TEACHER_TAU[self.teacher.teacher]

    @property
    def resolved_loss(self) -> str:
        """``loss``, or the target's conventional loss where it is null (see the class docstring)."""
        if self.loss is not None:
            return self.loss
        if self.teacher.teacher == "emdr" and self.target == "teacher":
            return "emdr"
        return "candidates" if self.target in ("teacher", "answer-gated") else "in-batch"

    def validate(self) -> TrainConfig:
        """Reject values that would run but produce nonsense; name the option and what is expected."""
        def bad(name: str, expected: str) -> None:
            raise InputError(f"expected {expected}, got {getattr(self, name)!r}", field=name)

        if self.setting not in SETTINGS:
            bad("setting", f"one of {', '.join(SETTINGS)}")
        if not self.data:
            bad("data", "a data directory")
        if self.pilot_batch_size is not None and (not isinstance(self.pilot_batch_size, int) or self.pilot_batch_size < 1):
            bad("pilot_batch_size", "an integer >= 1, or null for the tower's default")
        for name in ("n_passages", "reader_batch_size", "distill_batch_size", "joint_batch_size",
                     "grad_accumulation", "eval_every", "save_every", "max_bad_steps"):
            if name == "eval_every" and self.eval_every is None:
                continue
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                bad(name, "an integer >= 1")
        for name in ("reader_steps", "distill_steps", "joint_steps", "eval_questions", "indicator_questions",
                     "pilot_steps", "pilot_questions", "pilot_dev_questions", "pilot_pool"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                bad(name, "an integer >= 0")
        for name in ("reader_lr", "retriever_lr", "tau_gold", "tau_score"):
            value = getattr(self, name)
            if name in ("tau_score", "tau_gold") and value is None:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                bad(name, "a positive finite number")
        if not 0 <= self.warmup_ratio < 1:
            bad("warmup_ratio", "a number in [0, 1)")
        if self.weight_decay < 0:
            bad("weight_decay", "a number >= 0")
        if self.max_grad_norm <= 0:
            bad("max_grad_norm", "a positive number")
        if self.scheduler not in ("linear", "cosine", "constant"):
            bad("scheduler", "linear, cosine or constant")
        if self.precision not in ("auto", "fp32", "bf16"):
            bad("precision", "auto, fp32 or bf16")
        if self.teacher_answers not in ("gold", "generated"):
            bad("teacher_answers", "gold or generated")
        from ..distill.targets import GATE_FALLBACKS, TARGETS, TEACHER_TARGETS

        if self.target not in TARGETS:
            bad("target", f"one of {', '.join(TARGETS)}")
        if self.loss not in (None, "candidates", "in-batch", "emdr"):
            bad("loss", "candidates, in-batch, emdr, or null for the target's own")
        if self.gate_fallback not in GATE_FALLBACKS:
            bad("gate_fallback", f"one of {', '.join(GATE_FALLBACKS)}")
        emdr_teacher = self.teacher.teacher == "emdr" and self.target in TEACHER_TARGETS
        if emdr_teacher and (self.target != "teacher" or self.loss not in (None, "emdr")):
            bad("loss", "emdr (or null) with target teacher: EMDR's log-likelihoods are trained with its own loss")
        if self.loss == "emdr" and not emdr_teacher:
            bad("loss", "candidates or in-batch: the emdr loss needs the emdr teacher (teacher.teacher=emdr)")
        if self.teacher_answers == "generated" and self.target not in ("teacher", "teacher-top1"):
            bad("target", "teacher or teacher-top1 when the teacher answers are generated (the answer targets "
                "match gold answers)")
        if self.teacher_answers == "generated" and (self.distill_mode == "online" or self.setting == "joint"):
            bad("teacher_answers", "gold when distillation is online or joint (the online teacher is "
                "teacher-forced on the gold answer; generated answers run cached)")
        if self.distill_mode == "online" and (self.target != "teacher" or self.loss not in (None, "candidates", "emdr")):
            bad("target" if self.target != "teacher" else "loss",
                "target teacher with the candidates (or emdr) loss when distillation is online (the online "
                "teacher re-scores each step's own candidates; other targets and losses run cached)")
        if self.first_stage not in (None, "dense", "bm25", "hybrid"):
            bad("first_stage", "dense, bm25, hybrid, or null for the hybrid where there is a dev split")
        if not isinstance(self.hybrid, FusionConfig):
            raise InputError(f"expected the hybrid's options, got {self.hybrid!r}", field="hybrid")
        try:
            self.hybrid.validate()
        except InputError as exc:
            raise InputError(exc.reason, field=f"hybrid.{exc.field}" if exc.field else "hybrid") from exc
        if self.hybrid.weight is not None and self.first_stage not in (None, "hybrid"):
            raise InputError(f"expected null unless first_stage is hybrid (or null), got {self.hybrid.weight!r}",
                             field="hybrid.weight")
        if self.retriever_similarity not in (None, "cosine", "dot"):
            bad("retriever_similarity", "cosine, dot, or null for the model's own")
        if self.scale_by_dim not in (None, True, False):
            bad("scale_by_dim", "true, false, or null for the similarity's default")
        if self.retriever_training not in ("query", "full"):
            bad("retriever_training", "query or full")
        if self.distill_mode not in ("cached", "online"):
            bad("distill_mode", "cached or online")
        if self.pilot_only not in (True, False):
            bad("pilot_only", "true or false")
        if self.pilot_only and (self.pilot_steps < 1 or self.distill_mode != "cached" or "distill" not in self.stages):
            bad("pilot_only", "false unless the setting runs a cached distillation with a pilot (pilot_steps >= 1)")
        if self.reader_trainable_layers is not None and self.reader_trainable_layers < 1:
            bad("reader_trainable_layers", "an integer >= 1, or null for all layers")
        for name in ("train_questions", "distill_questions", "distill_passages"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                bad(name, "an integer >= 1, or null for all")
        from .schedule import parse_refresh_schedule

        parse_refresh_schedule(self.refresh_schedule)
        return self

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict, source: str | None = None) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known - {"supervision", "hybrid_weight", "hybrid_depth"})
        if unknown:
            raise InputError(f"unknown option(s) {unknown}; known: {sorted(known)}", path=source, field=unknown[0])
        values = dict(raw)
        for legacy in ("hybrid_weight", "hybrid_depth"):  # written before the hybrid's options were one config
            if legacy in values:
                values.setdefault("hybrid", {})
                if isinstance(values["hybrid"], dict):
                    values["hybrid"].setdefault(legacy.removeprefix("hybrid_"), values.pop(legacy))
        if "supervision" in values:  # written before target / loss were separate options (same meaning)
            legacy = values.pop("supervision")
            if "target" not in values:
                values["target"] = legacy
        try:
            if isinstance(values.get("teacher"), dict):
                values["teacher"] = TeacherConfig(**values["teacher"])
            if isinstance(values.get("prompt"), dict):
                values["prompt"] = PromptConfig(**values["prompt"])
            if isinstance(values.get("hybrid"), dict):
                values["hybrid"] = FusionConfig(**values["hybrid"])
        except (TypeError, ValueError) as exc:
            raise InputError(str(exc), path=source, field="teacher/prompt/hybrid") from exc
        return cls(**values)

    def save(self, path: str | Path) -> None:
        from ..io import write_json

        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        from ..io import read_json_object

        return cls.from_dict(read_json_object(path), source=str(path))
