"""The training loop: reader fine-tuning, attention distillation, or both, resumable at any step.

Order of operations (ATLAS's, without its globals): for each step, (1) retrieve with the current
retriever, (2) score the retrieved passages with the teacher (no gradient, eval mode), (3) compute
the losses (LM loss on answer tokens for the reader, ``KL(p_ATTN || p_RETR)`` for the retriever),
(4) step the optimisers, (5) refresh the index when the passage tower changed and the schedule says
so. In the default ``cached`` distillation mode steps (1)-(2) run once for every training question
before the retriever trains (FiD-KD's order), which pays the expensive reader pass once instead of
once per epoch.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.formats import load_corpus_dir
from ..data.records import Passage, QAExample
from ..distill.loss import LOSSES, TargetBatch, retriever_logits, student_temperature
from ..distill.targets import (
    TEACHER_TARGETS,
    Target,
    answer_gated_target,
    answer_target,
    gold_target,
    target_stats,
    teacher_target,
    teacher_top1_target,
)
from ..distill.teacher import Teacher
from ..errors import InputError, TrainingDivergedError
from ..evaluate.bootstrap import paired_bootstrap
from ..evaluate.metrics import answer_hits, dpr_tokens, exact_match, recall_at_k, tokens_have_answer
from ..evaluate.retrieval import tune_hybrid_weight
from ..evaluate.teacher import answer_teacher_accuracy, teacher_accuracy
from ..io import append_jsonl, atomic_path, write_json
from ..parallel import pick_device
from ..reader.factory import load_reader
from ..reader.protocol import Reader
from ..retrieval.encoder import BiEncoder
from ..retrieval.index import PassageIndex, build_index, check_encoder
from ..retrieval.searcher import DenseSearcher, HybridSearcher
from ..retrieval.lexical import BM25Index
from ..retrieval.sharded import build_sharded_index
from ..retrieval.store import load_indexed_corpus, refresh_any_index, save_any_index
from .checkpoint import (
    load_checkpoint,
    load_teacher_cache,
    load_trainable_state,
    rng_state,
    save_checkpoint,
    save_teacher_cache,
    set_rng_state,
    trainable_state,
)
from .config import TrainConfig
from ..parallel import Dist, init_distributed, lm_token_count
from ..provenance import Provenance
from ..run import MANIFEST, RunDir
from ..run import TEACHER_CACHE as TEACHER_CACHE_NAME
from .schedule import make_scheduler, parse_refresh_schedule, should_refresh

RUN_MANIFEST = MANIFEST  # names kept for callers of the trainer module
TEACHER_CACHE = TEACHER_CACHE_NAME


@dataclass
class StageState:
    """Where a stage is: the next optimiser step and the count of consecutive non-finite losses."""

    stage: int = 0
    step: int = 0
    bad_steps: int = 0


@dataclass
class Loop:
    """One stage's optimisation as :meth:`Trainer._optimise` runs it. A stage method prepares its
    examples, targets and loss, builds one of these and hands it over; the loop itself (micro-batches,
    clipping, skipped non-finite steps, logging, evaluation, checkpoints) is the same for every stage."""

    name: str  #: the stage's name in the metrics log: reader, distill or joint
    stage_idx: int  #: the stage's position: seeds the example order, keys the checkpoint
    state: StageState  #: where the stage is (restored on resume)
    steps: int  #: optimiser steps in all
    batch_size: int
    n_examples: int  #: batches are drawn from range(n_examples)
    micro_loss: Callable[[list[int]], torch.Tensor]  #: the loss of one micro-batch of example indices
    params: list  #: the trainable parameters, clipped together
    optimizer: torch.optim.Optimizer
    scheduler: Any
    module: Any  #: put in train / eval mode around evaluations and checkpointed
    evaluate: Callable[[], dict] | None  #: dev metrics every ``eval_every`` steps and at the end (None: none)
    after_step: Callable[[int], None] | None = None  #: e.g. refresh the index of a tied tower
    checkpoint: bool = True  #: save resumable checkpoints every ``save_every`` steps (a pilot does not)


def example_order(n: int, seed: int, stage: int, epoch: int) -> np.ndarray:
    """The permutation of training examples for one epoch of one stage (pure function of its inputs,
    so a resumed run visits the same examples in the same order without storing the order)."""
    return np.random.default_rng([seed, stage, epoch]).permutation(n)


def batch_indices(step: int, batch_size: int, n: int, seed: int, stage: int) -> list[int]:
    out = []
    for i in range(step * batch_size, (step + 1) * batch_size):
        epoch, pos = divmod(i, n)
        out.append(int(example_order(n, seed, stage, epoch)[pos]))
    return out


def _no_target_message(cfg: TrainConfig, n: int) -> str:
    """Why no distillation question has a target, and the way out."""
    k = cfg.distill_passages or cfg.n_passages
    if cfg.teacher_answers == "generated":
        return (f"the reader generated an empty answer for all {n} distillation questions, so there is nothing "
                "to teach with; fine-tune the reader first or raise prompt.max_answer_tokens")
    if cfg.target == "gold":
        return f"target=gold needs gold_passage_ids in the training questions (none of {n} has them)"
    return (f"target={cfg.target} needs a gold answer in the text of at least one of the top {k} candidates "
            f"(none of {n} questions has one); raise distill_passages or use target=teacher")


def select_subset(examples: list[QAExample], limit: int | None, seed: int) -> list[QAExample]:
    if limit is None or limit >= len(examples):
        return list(examples)
    keep = np.random.default_rng([seed, 7]).permutation(len(examples))[:limit]
    return [examples[i] for i in sorted(keep)]


class Trainer:
    """Runs one training setting into a run directory. ``Trainer(config).run()`` is ``attnrag train``."""

    def __init__(self, config: TrainConfig, resume: bool = False, progress: bool = True,
                 dist: Dist | None = None) -> None:
        self.provenance = Provenance.start()  # run.json records the command, commit and machine of this call
        self.run_dir = Path(config.out)
        self.layout = RunDir(self.run_dir)  # every path of the run directory comes from here
        if not config.out:
            raise InputError("an output run directory is required", field="out")
        existing = self.layout.config_path
        if resume:
            if not existing.is_file():
                raise InputError("nothing to resume: no config.json", path=self.run_dir)
            config = TrainConfig.load(existing)
        elif existing.is_file():
            raise InputError("run directory already holds a run; pass --resume to continue it or choose a new --out",
                             path=self.run_dir)
        self.config = config.validate()
        # under torchrun: join the process group (nccl on GPUs, gloo on CPUs); else a world of one
        self.dist = dist if dist is not None else init_distributed(self.config.device)
        if self.dist.enabled and self.config.first_stage not in (None, "dense"):
            raise InputError("a bm25 or hybrid first stage runs in one process (the BM25 index is not sharded); "
                             "run without torchrun or with first_stage=dense", field="first_stage")
        self.resume = resume
        self.progress = progress and self.dist.is_main
        self.device = self.dist.device if self.dist.enabled else pick_device(config.device)
        self.dist.barrier()  # every rank has checked the run directory before rank 0 writes into it
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not resume:
                _absolute_inputs(self.config).save(existing)
        self.dist.barrier()
        self.metrics_path = self.layout.metrics_path
        self.indicator_hook = None  # set by analysis: fn(reader, examples, passages) -> dict

    # ------------------------------------------------------------------ setup
    def _load(self) -> None:
        cfg = self.config
        torch.manual_seed(cfg.seed)
        self.passages_list, splits = load_corpus_dir(cfg.data, cfg.distractors)
        if "train" not in splits:
            raise InputError("training needs a train.jsonl split", path=cfg.data)
        self.train_examples = select_subset(splits["train"], cfg.train_questions, cfg.seed)
        # no dev split: no evaluation during training (test questions are never used to steer a run)
        self.dev_split = splits.get("dev") or []
        self.dev_examples = select_subset(self.dev_split, cfg.eval_questions, cfg.seed) if self.dev_split else []
        if cfg.n_passages > len(self.passages_list):
            raise InputError(f"n_passages={cfg.n_passages} is larger than the corpus ({len(self.passages_list)} "
                             "passages)", field="n_passages")

        init = _read_manifest(Path(cfg.init_run)) if cfg.init_run else None
        reader_src = self.layout.reader_dir
        if not reader_src.is_dir():
            reader_src = Path(init["reader"]) if init else cfg.reader
        # the reader whose scores a teacher cache holds: a fine-tuning run's own reader, once trained
        fine_tunes = "reader" in cfg.stages or "joint" in cfg.stages
        self.reader_identity = str((self.layout.reader_dir if fine_tunes else Path(reader_src)).resolve()
                                   if fine_tunes or Path(reader_src).exists() else reader_src)
        self.reader: Reader = load_reader(reader_src, prompt=None if init else cfg.prompt, device=str(self.device),
                                  precision=cfg.precision)
        retr_src = self.layout.retriever_dir
        if not retr_src.is_dir():
            retr_src = Path(init["retriever"]) if init else cfg.retriever
        self.retriever = BiEncoder.from_pretrained(retr_src, device=self.device,
                                                   similarity=cfg.retriever_similarity)
        self.tau_score, self.scale_by_dim = student_temperature(self.retriever.similarity, cfg.tau_score,
                                                                   cfg.scale_by_dim)
        if cfg.retriever_training == "query":
            self.retriever.untie(freeze=True)

        index_dir = self.layout.index_dir
        if index_dir.is_dir():
            self.index, self.passages = load_indexed_corpus(index_dir, self.dist, self.passages_list)
        elif init and init.get("index"):
            self.index, self.passages = load_indexed_corpus(init["index"], self.dist, self.passages_list)
        elif cfg.index:
            self.index, self.passages = load_indexed_corpus(cfg.index, self.dist, self.passages_list)
        elif self.dist.enabled:  # several processes: each encodes and holds its shard of the corpus
            self.index = build_sharded_index(self.passages_list, self.retriever, self.dist,
                                             progress=self.progress)
            save_any_index(self.index, self.layout.base_index_dir, self.dist)
            self.passages = {p.id: p for p in self.passages_list}
        else:
            self.index = build_index(self.passages_list, self.retriever, progress=self.progress)
            self.index.save(self.layout.base_index_dir)
            self.passages = self.index.passages
        if cfg.retriever_training == "query":  # a frozen passage tower must be the one that built the index
            check_encoder(self.index, self.retriever, cfg.index)
        self.index_dir = (index_dir if index_dir.is_dir() else
                          Path(init["index"]) if init and init.get("index") else
                          Path(cfg.index) if cfg.index else self.layout.base_index_dir)
        self.teacher = Teacher(self.reader, cfg.teacher)
        self._load_first_stage()

    def _resolve_first_stage(self) -> tuple[str, str | None]:
        """``(first stage, why)``: the configured one (``why`` None), or, where none was given, the
        dev-tuned hybrid, the first stage the committed dev evidence picks on every set measured
        (docs/results/first-stage/first_stage.json), when the data has a dev split to tune its weight on
        and the run is one process; else the dense retriever, with the reason."""
        if self.config.first_stage is not None:
            return self.config.first_stage, None
        if self.dist.enabled:
            return "dense", "no first stage given; the hybrid runs in one process only (not under torchrun)"
        if not self.dev_split:
            return "dense", "no first stage given; the hybrid's weight is chosen on a dev split, and the data has none"
        return "hybrid", ("no first stage given: the BM25 + dense hybrid with its weight chosen on dev, best on dev on "
                          "every set measured (docs/results/first-stage)")

    def _load_first_stage(self) -> None:
        """The BM25 index (``first_stage`` bm25 or hybrid) and the hybrid's weight: the configured one,
        the one this run chose before (``first_stage.json``), or one chosen now on the dev split with
        the starting retriever (never on test)."""
        cfg = self.config
        self.lexical: BM25Index | None = None
        self.hybrid_weight = cfg.hybrid.weight
        self.first_stage, why = self._resolve_first_stage()
        self.first_stage_record: dict = {"first_stage": self.first_stage, **({"chosen_because": why} if why else {})}
        if why and self.progress:
            print(f"first stage: {self.first_stage} ({why})", file=sys.stderr, flush=True)
        if self.first_stage == "dense":
            return
        t0 = time.time()
        self.lexical = BM25Index.build(self.passages_list)
        self.first_stage_record["bm25"] = self.lexical.record()
        self.first_stage_record["bm25_build_seconds"] = round(time.time() - t0, 2)
        if self.first_stage == "hybrid":
            record_path = self.layout.first_stage_path
            stored = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
            if self.hybrid_weight is None and isinstance(stored.get("hybrid_weight"), int | float):
                self.hybrid_weight = float(stored["hybrid_weight"])
                self.first_stage_record.update({k: v for k, v in stored.items() if k.startswith("hybrid")})
            elif self.hybrid_weight is None:
                if not self.dev_split:
                    raise InputError("first_stage=hybrid chooses its weight on the dev split, and this data has "
                                     "no dev.jsonl; give hybrid.weight (--hybrid-weight)", path=cfg.data,
                                     field="hybrid.weight")
                self.retriever.eval()
                tuned = tune_hybrid_weight(self.lexical, self.index, self.retriever, self.dev_split,
                                           depth=cfg.hybrid.depth, check=False)
                self.hybrid_weight = tuned["weight"]
                self.first_stage_record["hybrid_tuning"] = tuned
            self.first_stage_record.update({"hybrid_weight": self.hybrid_weight, "hybrid_depth": cfg.hybrid.depth,
                                            "hybrid_fusion": cfg.hybrid.fusion})
        # with the command, commit and machine that chose it, like every file a run writes for reading later
        self.dist.on_main(write_json, self.layout.first_stage_path,
                          {**self.first_stage_record, "provenance": self.provenance.record()})
        self._log({"event": "first_stage", **{k: v for k, v in self.first_stage_record.items() if k != "bm25"}})

    def _dense_searcher(self) -> DenseSearcher:
        """The dense retriever being trained over the current dense index (unchecked: the trainer's
        own index, re-encoded whenever its passage tower moves). Rebuilt only when a refresh replaced
        the index: the encoder it holds is the one being trained, so it always searches with the
        current weights."""
        searcher = getattr(self, "_dense", None)
        if searcher is None or searcher.index is not self.index:
            searcher = self._dense = self.index.searcher(self.retriever, check=False)
        return searcher

    def _first_stage(self):
        """Where the reader's passages and the teacher's candidates come from: the dense searcher,
        BM25, or their hybrid over the current dense searcher (built once, again only after a tied
        tower's refresh: building one compares every passage id of both sides)."""
        if self.first_stage == "bm25":
            return self.lexical
        if self.first_stage == "hybrid":
            dense = self._dense_searcher()
            hybrid = getattr(self, "_hybrid", None)
            if hybrid is None or hybrid.dense is not dense or hybrid.weight != self.hybrid_weight:
                hybrid = self._hybrid = HybridSearcher(self.lexical, dense, self.config.hybrid.fusion,
                                                       self.hybrid_weight, self.config.hybrid.depth)
            return hybrid
        return self._dense_searcher()

    # ------------------------------------------------------------------ public entry point
    def run(self) -> dict:
        """Run (or resume) every stage of the setting; return the run manifest with its reader,
        retriever and index as absolute paths (run.json stores the run's own parts relative)."""
        start = time.time()
        ckpt = load_checkpoint(self.run_dir) if self.resume else None
        if self.resume:  # a damaged run file is refused now, before minutes of model loading
            load_teacher_cache(self.layout.teacher_cache_path)
        self._load()
        manifest = _read_manifest(self.run_dir) if self.layout.manifest_path.is_file() else {}
        done = set(manifest.get("stages_done", []))
        state = StageState()
        if ckpt is not None:
            state = StageState(ckpt["stage"], ckpt["step"], ckpt.get("bad_steps", 0))
            self.dist.on_main(self._truncate_metrics, state)
        for stage_idx, stage in enumerate(self.config.stages):
            if stage in done:
                continue
            resume_ckpt = ckpt if (ckpt is not None and ckpt["stage"] == stage_idx) else None
            self._stages()[stage](stage_idx, resume_ckpt)
            done.add(stage)
            self._write_manifest(sorted(done, key=self.config.stages.index), final=False)
        self._write_manifest(list(self.config.stages), final=True, wall=time.time() - start)
        return self.layout.manifest()  # parts resolved: usable from any working directory

    def _stages(self) -> dict:
        """Stage name (``TrainConfig.stages``) -> the method that runs it: an explicit table, so every
        caller of a stage can be found by name."""
        return {"reader": self._stage_reader, "distill": self._stage_distill, "joint": self._stage_joint}

    # ------------------------------------------------------------------ stage: reader fine-tuning
    def _set_reader_trainable(self) -> list[torch.nn.Parameter]:
        # Both readers know their own architecture (decoder blocks and final norm of any causal LM,
        # or the FiD decoder), so layer selection works for GPT-2, GPT-NeoX, Falcon, ... alike.
        return self.reader.trainable_parameters(self.config.reader_trainable_layers)

    def _retrieve(self, questions: list[str], k: int, dense: bool = False
                  ) -> tuple[list[list[str]], list[list[Passage]]]:
        """Top-``k`` ids and passages from the first stage (``dense``: from the dense retriever alone)."""
        self.retriever.eval()
        _, ids = (self._dense_searcher() if dense else self._first_stage()).search(questions, k)
        return ids, [[self.passages[i] for i in row] for row in ids]

    def _stage_reader(self, stage_idx: int, ckpt: dict | None) -> None:
        cfg = self.config
        examples = self.train_examples
        _, retrieved = self._retrieve([e.question for e in examples], cfg.n_passages)
        params = self._set_reader_trainable()
        optimizer = torch.optim.AdamW(params, lr=cfg.reader_lr, weight_decay=cfg.weight_decay)
        scheduler = make_scheduler(optimizer, cfg.reader_steps, cfg.warmup_ratio, cfg.scheduler)
        state = self._restore(stage_idx, ckpt, self.reader.model, optimizer, scheduler)

        def micro_loss(indices: list[int]) -> torch.Tensor:
            batch = self.reader.batch([examples[i].question for i in indices], [retrieved[i] for i in indices],
                                      [examples[i].answers[0] for i in indices], with_labels=True)
            return self.dist.global_mean(self.reader.loss(batch), lm_token_count(batch))

        self.reader.model.train()
        self._optimise(Loop("reader", stage_idx, state, cfg.reader_steps, cfg.reader_batch_size, len(examples),
                            micro_loss, params, optimizer, scheduler, self.reader.model,
                            evaluate=lambda: self._eval_reader()))
        self.reader.model.eval()
        self.dist.on_main(self.reader.save, self.layout.reader_dir)

    # ------------------------------------------------------------------ stage: distillation
    def _stage_distill(self, stage_idx: int, ckpt: dict | None) -> None:
        """Cached distillation: build each question's target once (teacher pass, answer match or gold
        labels, :meth:`_targets`), then train the retriever on the targets with the configured loss
        (:meth:`_train_on_targets`). Online distillation re-scores every step (:meth:`_stage_online`)."""
        cfg = self.config
        if cfg.distill_mode == "online":
            return self._stage_online(stage_idx, ckpt, joint=False)
        examples = select_subset(self.train_examples, cfg.distill_questions, cfg.seed + 1)
        targets = self._targets(examples)
        kept = [i for i, t in enumerate(targets) if t is not None]
        if not kept:
            raise InputError(_no_target_message(cfg, len(examples)), field="target")
        examples, targets, loss = [examples[i] for i in kept], [targets[i] for i in kept], LOSSES[cfg.resolved_loss]()
        if ckpt is None:  # a fresh stage (a resumed one logged its pilot before it stopped)
            self._pilot(stage_idx, examples, targets, loss)
        if cfg.pilot_only:  # the question was whether to train: the retriever stays as it was
            return
        self._train_on_targets(stage_idx, ckpt, examples, targets, loss)

    def _targets(self, examples: list[QAExample]) -> list[Target | None]:
        """Each question's target over its first-stage candidates (``None``: left out), and one
        ``targets`` event in the metrics: how many were left out, and how often the target's favourite
        is a gold passage and holds a gold answer (what the row's teacher knows)."""
        cfg = self.config
        k = cfg.distill_passages or cfg.n_passages
        scores, keep = None, None
        if cfg.target in TEACHER_TARGETS:
            cache = self._teacher_cache(examples)
            cand_ids, scores, keep = cache["candidate_ids"], cache["scores"].tolist(), cache.get("keep")
        else:
            cand_ids, _ = self._retrieve([e.question for e in examples], k)
        bearing = [[tokens_have_answer(dpr_tokens(self.passages[p].text), [dpr_tokens(a) for a in e.answers])
                    for p in row] for e, row in zip(examples, cand_ids, strict=True)]
        targets: list[Target | None] = []
        for i, (e, row) in enumerate(zip(examples, cand_ids, strict=True)):
            if keep is not None and not keep[i]:  # a generated answer that came out empty
                targets.append(None)
            elif cfg.target == "teacher":
                targets.append(teacher_target(row, scores[i], cfg.teacher_tau))
            elif cfg.target == "teacher-top1":
                targets.append(teacher_top1_target(row, scores[i]))
            elif cfg.target == "answer-gated":
                targets.append(answer_gated_target(row, scores[i], bearing[i], cfg.teacher_tau, cfg.gate_fallback))
            elif cfg.target == "answer":
                targets.append(answer_target(row, bearing[i]))
            else:
                targets.append(gold_target(row, e.gold_passage_ids, k))
        holds = [dict(zip(row, hits, strict=True)) for row, hits in zip(cand_ids, bearing, strict=True)]

        def holds_answer(i: int, pid: str) -> bool:
            if pid not in holds[i]:  # a gold passage the first stage did not retrieve (gold target)
                answers = [dpr_tokens(a) for a in examples[i].answers]
                holds[i][pid] = tokens_have_answer(dpr_tokens(self.passages[pid].text), answers)
            return holds[i][pid]

        self._log({"stage": "distill", "event": "targets", "target": cfg.target, "loss_kind": cfg.resolved_loss,
                   **target_stats(targets, [e.gold_passage_ids for e in examples], cand_ids, holds_answer)})
        return targets

    def _candidate_embeddings(self, candidates: list[Passage]):
        """``positions -> [..., dim]`` embeddings of the cached candidates (``candidates[position]``).

        A frozen passage tower's are computed once, without gradient. A trained (tied) tower's are
        recomputed with gradient for the candidates each batch uses, so the passage side learns too:
        the cached candidates and teacher scores stay fixed (FiD-KD), only their embeddings move."""
        if self.config.retriever_training == "query":
            fixed = torch.from_numpy(self.retriever.encode_passages(candidates, progress=self.progress)
                                     ).to(self.device)
            return lambda positions: fixed[positions]

        def embed(positions: torch.Tensor) -> torch.Tensor:
            needed, inverse = torch.unique(positions, return_inverse=True)
            return self.retriever.embed_passages([candidates[i] for i in needed.tolist()])[inverse]

        return embed

    def _target_loss(self, examples: list[QAExample], targets: list[Target], loss) -> Callable[[list[int]], torch.Tensor]:
        """The loss of a micro-batch of example indices: embed its questions and the pool of their
        candidates (the union; a tied tower re-embeds them with gradient), score every question against
        the whole pool, and let ``loss`` choose its columns: the question's own candidates
        (``candidates``), or the whole pool (``in-batch``)."""
        unique = sorted({p for t in targets for p in t.candidates})
        position = {pid: i for i, pid in enumerate(unique)}
        own = [[position[p] for p in t.candidates] for t in targets]
        excluded = [[position[p] for p in t.excluded if p in position] for t in targets]
        passage_emb = self._candidate_embeddings([self.passages[p] for p in unique])

        def micro_loss(indices: list[int]) -> torch.Tensor:
            pool = sorted({j for i in indices for j in own[i]})
            column = {j: c for c, j in enumerate(pool)}
            shape = (len(indices), len(pool))
            target, scores = torch.zeros(shape), torch.zeros(shape)
            is_own, is_excluded = torch.zeros(shape, dtype=torch.bool), torch.zeros(shape, dtype=torch.bool)
            for b, i in enumerate(indices):
                cols = [column[j] for j in own[i]]
                target[b, cols] = torch.tensor(targets[i].probs)
                if targets[i].scores is not None:
                    scores[b, cols] = torch.tensor(targets[i].scores)
                is_own[b, cols] = True
                is_excluded[b, [column[j] for j in excluded[i] if j in column]] = True
            batch = TargetBatch(target.to(self.device), is_own.to(self.device), is_excluded.to(self.device),
                                scores.to(self.device))
            q = self.retriever.embed_queries([examples[i].question for i in indices])
            pooled = passage_emb(torch.tensor(pool, device=self.device))
            logits = retriever_logits(q, pooled.unsqueeze(0).expand(len(indices), -1, -1),
                                      self.scale_by_dim) / self.tau_score
            return self.dist.global_mean(loss(logits, batch), len(indices))

        return micro_loss

    def _pilot(self, stage_idx: int, examples: list[QAExample], targets: list[Target], loss) -> None:
        """A pilot before the full distillation (``pilot_steps`` > 0 and a dev split with answers):
        the same targets, loss and tower on the first ``pilot_questions`` distillation questions for
        ``pilot_steps`` steps of ``pilot_batch_size`` questions (a query tower: the run's batch; a tied
        tower: 8), then dev answer recall@1 and @5 of the
        dense retriever before and after, paired question by question with a 95% bootstrap interval: the
        ``pilot`` event. No gold ids needed. Its teacher scores are the first rows of the full pass (no
        extra reader cost); its ``seconds`` are its steps and its two dev retrievals. A tied tower's
        "after" re-ranks each dev question's top ``pilot_pool`` of the starting retriever
        (:meth:`_rerank_pool`), so the pilot re-encodes a few thousand passages, not the corpus (0: the
        corpus, as before 2026-12-07). The retriever's weights, the index and every RNG are then restored,
        so the full run is the one it would have been without the pilot (tests/test_trainer_pilot.py
        checks the weights). Why in every run: the pilot's prediction can then be checked against every
        full run's outcome."""
        cfg = self.config
        dev = [e for e in self.dev_split if e.answers][: cfg.pilot_dev_questions]
        n = min(cfg.pilot_questions, len(examples))
        if cfg.pilot_steps < 1 or len(dev) < 2 or n < 1:
            return
        start = time.time()
        weights = {name: value.detach().clone() for name, value in self.retriever.state_dict().items()}
        rng, index = rng_state(), self.index
        k = max(5, cfg.n_passages)
        pool = cfg.retriever_training == "full" and cfg.pilot_pool > 0
        questions = [e.question for e in dev]
        ids_before, _ = self._retrieve(questions, max(k, cfg.pilot_pool) if pool else k, dense=True)
        before = self._answer_hits([row[:k] for row in ids_before], dev)
        # the time after the dev retrieval: what follows (candidate embeddings, steps) scales with the
        # questions, the retrieval does not (attnrag.train.timing estimates the full loop from it)
        self._log({"stage": "distill", "event": "pilot_dev_retrieved", "questions": len(dev)})
        params = [p for p in self.retriever.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.retriever_lr, weight_decay=cfg.weight_decay)
        scheduler = make_scheduler(optimizer, cfg.pilot_steps, cfg.warmup_ratio, cfg.scheduler)
        batch_size = min(cfg.resolved_pilot_batch_size, n)
        self.retriever.train()
        self._optimise(Loop("pilot", stage_idx, StageState(stage_idx), cfg.pilot_steps, batch_size,
                            n, self._target_loss(examples[:n], targets[:n], loss), params, optimizer, scheduler,
                            self.retriever, evaluate=None, checkpoint=False))
        self.retriever.eval()
        if pool:
            ids_after = self._rerank_pool(questions, ids_before, k)
        else:
            if cfg.retriever_training == "full":
                self._refresh_index()
            ids_after, _ = self._retrieve(questions, k, dense=True)
        after = self._answer_hits(ids_after, dev)
        self.retriever.load_state_dict(weights)
        self.index = index
        set_rng_state(rng)
        changes = {name: {"before": float(before[name].mean()), "after": float(after[name].mean()),
                          **paired_bootstrap(after[name], before[name])} for name in before}
        hits = {name: {"before": before[name].astype(int).tolist(), "after": after[name].astype(int).tolist()}
                for name in before}  # per dev question, in order: lets two pilots be compared pairwise
        self._log({"stage": "distill", "event": "pilot", "questions": n, "steps": cfg.pilot_steps,
                   "batch_size": batch_size, "dev_questions": len(dev), "pool": cfg.pilot_pool if pool else None,
                   "seconds": round(time.time() - start, 2), **changes, "hits": hits})

    def _rerank_pool(self, questions: list[str], pools: list[list[str]], k: int) -> list[list[str]]:
        """Each question's top ``k`` among its own ``pools`` row, by the current towers: only the pools'
        passages are encoded (once each), not the corpus. Logged as ``pilot_pool_encoded`` with how many
        passages of the corpus it encoded, so the timing estimator can scale the encoding to a refresh."""
        unique = sorted({pid for row in pools for pid in row})
        with torch.no_grad():
            q = self.retriever.encode_queries(questions)
            p = torch.from_numpy(self.retriever.encode_passages([self.passages[i] for i in unique], progress=False))
        column = {pid: c for c, pid in enumerate(unique)}
        scores = self.retriever.score(q, p)
        ranked = []
        for b, row in enumerate(pools):
            own = scores[b, [column[pid] for pid in row]]
            order = torch.sort(own, descending=True, stable=True).indices[:k].tolist()
            ranked.append([row[j] for j in order])
        self._log({"event": "pilot_pool_encoded", "passages": len(unique), "corpus": len(self.passages)})
        return ranked

    def _answer_hits(self, ids: list[list[str]], dev: list[QAExample]) -> dict[str, np.ndarray]:
        """Per dev question: does the ranking's top 1 / top 5 hold a gold answer (DPR matching)?"""
        return {f"answer_recall@{j}": answer_hits(ids, self.passages, dev, j) for j in (1, 5)}

    def _train_on_targets(self, stage_idx: int, ckpt: dict | None, examples: list[QAExample],
                          targets: list[Target], loss) -> None:
        """Train the retriever on fixed targets with ``loss`` (:mod:`attnrag.distill.loss`; the batch
        loss of :meth:`_target_loss`) for ``distill_steps`` (resuming from ``ckpt``), then save it: the
        query tower alone (``retriever_training="query"``), or the tied tower (``"full"``), whose index
        is re-encoded before each evaluation and once at the end, then saved in the run directory."""
        micro_loss = self._target_loss(examples, targets, loss)

        n_examples = len(examples)
        cfg = self.config
        full = cfg.retriever_training == "full"
        params = [p for p in self.retriever.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.retriever_lr, weight_decay=cfg.weight_decay)
        scheduler = make_scheduler(optimizer, cfg.distill_steps, cfg.warmup_ratio, cfg.scheduler)
        state = self._restore(stage_idx, ckpt, self.retriever, optimizer, scheduler)
        fresh_at = {"step": None}  # the step whose weights built the current index

        def evaluate() -> dict:
            if full and fresh_at["step"] != state.step:
                self._refresh_index()
                fresh_at["step"] = state.step
            return self._eval_retriever()

        self.retriever.train()
        self._optimise(Loop("distill", stage_idx, state, cfg.distill_steps, cfg.distill_batch_size, n_examples,
                            micro_loss, params, optimizer, scheduler, self.retriever, evaluate=evaluate))
        self.retriever.eval()
        self.dist.on_main(self.retriever.save, self.layout.retriever_dir)
        if full:
            if fresh_at["step"] != state.step:
                self._refresh_index()
            self._save_run_index()

    def _teacher_cache(self, examples: list[QAExample]) -> dict:
        """Teacher scores for the top-K candidates of every distillation question, computed once.

        Saved after every chunk (atomically) so an interrupted run resumes the scoring where it stopped.
        """
        cfg = self.config
        path = self.layout.teacher_cache_path
        cache = load_teacher_cache(path)  # weights_only: a cache from elsewhere cannot run code
        ids, _ = self._retrieve([e.question for e in examples], cfg.distill_passages or cfg.n_passages)
        key = self._teacher_key()
        if cache is not None and (cache.get("question_ids") != [e.id for e in examples]
                                  or cache.get("candidate_ids") != ids or cache.get("key", key) != key):
            self._log({"stage": "distill", "event": "teacher_cache_discarded",
                       "reason": "other questions, candidates, reader, teacher, prompt or precision than this run's"})
            cache = None
        if cache is None:
            cache = {"question_ids": [e.id for e in examples], "candidate_ids": ids, "rows": [], "key": key}
        self._log({"stage": "distill", "event": "teacher_start", "questions": len(examples),
                   "cached": len(cache["rows"])})  # with the "teacher" event: the pass's wall time
        chunk = max(1, cfg.reader_batch_size)
        rows: list[torch.Tensor] = cache["rows"]
        bar = tqdm(total=len(examples), initial=len(rows), desc="teacher", unit="q", disable=not self.progress)
        per_round = chunk * self.dist.world_size  # each rank scores one chunk of every round
        for round_start in range(len(rows), len(examples), per_round):
            start = round_start + self.dist.rank * chunk
            part = examples[start : start + chunk]
            cands = [[self.passages[p] for p in cache["candidate_ids"][start + j]] for j in range(len(part))]
            scores, answers = self._score_chunk(part, cands)
            for got in self.dist.all_gather_object(scores.float().cpu()):
                rows.extend(got)
            if cfg.teacher_answers == "generated":
                for got in self.dist.all_gather_object(answers):
                    cache.setdefault("answers", []).extend(got)
            if self.dist.is_main:
                save_teacher_cache(path, cache)
            bar.update(min(per_round, len(examples) - round_start))
        bar.close()
        cache["scores"] = torch.stack(rows) if rows else torch.zeros((0, cfg.distill_passages or cfg.n_passages))
        stats = teacher_accuracy(cache["scores"], cache["candidate_ids"], examples)
        stats["answer_check"] = answer_teacher_accuracy(  # the label-free check on the same scores
            cache["scores"], [[self.passages[p] for p in row] for row in cache["candidate_ids"]], examples)
        if cfg.teacher_answers == "generated":
            generated = cache.get("answers", [])
            cache["keep"] = [bool(a.strip()) for a in generated]
            stats["generated_answer_em"] = float(np.mean([exact_match(a, e.answers) for a, e in
                                                          zip(generated, examples, strict=True)])) if generated else 0.0
            stats["generated_answer_empty"] = int(sum(not k for k in cache["keep"]))
        self._log({"stage": "distill", "event": "teacher", **stats})
        self._teacher_check_on_dev()
        return cache

    def _teacher_check_on_dev(self) -> None:
        """The teacher check again on held-out dev questions (``teacher_dev`` event). The distillation
        questions are a fine-tuned reader's own training questions, so its figure there includes
        memorisation; the dev figure is the one a prediction may use. Gold answers only (generated
        answers are checked on the distillation questions' logs)."""
        cfg = self.config
        examples = [e for e in self.dev_examples if e.answers]
        if not examples or cfg.teacher_answers != "gold":
            return
        k = cfg.distill_passages or cfg.n_passages
        ids, cands = self._retrieve([e.question for e in examples], k)
        chunk = max(1, cfg.reader_batch_size)
        scores = torch.cat([self.teacher.score([e.question for e in examples[i:i + chunk]], cands[i:i + chunk],
                                               [e.answers[0] for e in examples[i:i + chunk]]).float().cpu()
                            for i in range(0, len(examples), chunk)])
        stats = teacher_accuracy(scores, ids, examples) if any(e.gold_passage_ids for e in examples) else {}
        stats["answer_check"] = answer_teacher_accuracy(scores, cands, examples)
        self._log({"stage": "distill", "event": "teacher_dev", "questions_scored": len(examples),
                   "split": "dev", **stats})

    def _teacher_key(self) -> str:
        """Everything besides the questions and candidates that decides the teacher's scores: a cache
        made under another key (another row's, copied to share its pass) is discarded, not reused."""
        from dataclasses import asdict

        cfg = self.config
        return json.dumps({"reader": self.reader_identity, "teacher": asdict(cfg.teacher), "prompt": asdict(cfg.prompt),
                           "teacher_answers": cfg.teacher_answers,  # the precision the reader runs in here,
                           "precision": str(getattr(self.reader, "precision", cfg.precision))},  # not "auto"
                          sort_keys=True,
                          default=str)

    def _score_chunk(self, part: list[QAExample], cands: list[list[Passage]]) -> tuple[torch.Tensor, list[str]]:
        """Teacher scores of one chunk, with the gold answers or (``teacher_answers="generated"``, a
        user with questions but no answers) the answers the reader itself generates from the same
        candidates. An empty generated answer cannot be teacher-forced: its row is zeros and the
        question is left out of the distillation (``keep``)."""
        cfg = self.config
        k = cfg.distill_passages or cfg.n_passages
        if not part:
            return torch.zeros((0, k)), []
        questions = [e.question for e in part]
        if cfg.teacher_answers == "gold":
            return self.teacher.score(questions, cands, [e.answers[0] for e in part]), []
        answers = self.reader.generate(questions, cands, max_new_tokens=cfg.prompt.max_answer_tokens,
                                       batch_size=len(part))
        scores = torch.zeros((len(part), k))
        ok = [i for i, a in enumerate(answers) if a.strip()]
        if ok:
            scores[ok] = self.teacher.score([questions[i] for i in ok], [cands[i] for i in ok],
                                            [answers[i] for i in ok]).float().cpu()
        return scores, answers

    # ------------------------------------------------------------------ online distillation / joint
    def _stage_joint(self, stage_idx: int, ckpt: dict | None) -> None:
        self._stage_online(stage_idx, ckpt, joint=True)

    def _stage_online(self, stage_idx: int, ckpt: dict | None, joint: bool) -> None:
        cfg = self.config
        examples = self.train_examples
        full = cfg.retriever_training == "full"
        schedule = parse_refresh_schedule(cfg.refresh_schedule)
        retr_params = [p for p in self.retriever.parameters() if p.requires_grad]
        params = list(retr_params)
        groups = [{"params": retr_params, "lr": cfg.retriever_lr}]
        if joint:
            reader_params = self._set_reader_trainable()
            groups.append({"params": reader_params, "lr": cfg.reader_lr})
            params += reader_params
        optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
        steps = cfg.joint_steps if joint else cfg.distill_steps
        batch_size = cfg.joint_batch_size if joint else cfg.reader_batch_size
        scheduler = make_scheduler(optimizer, steps, cfg.warmup_ratio, cfg.scheduler)
        online_loss = LOSSES[cfg.resolved_loss]()  # KL over each step's own candidates, or EMDR
        modules = torch.nn.ModuleDict({"retriever": self.retriever, "reader": self.reader.model})
        state = self._restore(stage_idx, ckpt, modules, optimizer, scheduler)

        def micro_loss(indices: list[int]) -> torch.Tensor:
            batch_ex = [examples[i] for i in indices]
            questions = [e.question for e in batch_ex]
            answers = [e.answers[0] for e in batch_ex]
            _, retrieved = self._retrieve(questions, cfg.n_passages)
            self.retriever.train()
            teacher = self.teacher.score(questions, retrieved, answers)
            q = self.retriever.embed_queries(questions)
            flat = [p for row in retrieved for p in row]
            if full:
                p_emb = self.retriever.embed_passages(flat)
            else:
                with torch.no_grad():
                    p_emb = self.retriever.embed_passages(flat)
            student = retriever_logits(q, p_emb.view(len(indices), cfg.n_passages, -1), self.scale_by_dim)
            batch = TargetBatch.over_candidates(teacher, cfg.teacher_tau)
            loss = self.dist.global_mean(online_loss(student / self.tau_score, batch), len(indices))
            if joint:
                self.reader.model.train()
                batch = self.reader.batch(questions, retrieved, answers, with_labels=True)
                loss = loss + self.dist.global_mean(self.reader.loss(batch), lm_token_count(batch))
            return loss

        def after_step(step: int) -> None:
            if full and should_refresh(step, schedule):
                self._refresh_index()

        self._optimise(Loop("joint" if joint else "distill", stage_idx, state, steps, batch_size, len(examples),
                            micro_loss, params, optimizer, scheduler, modules,
                            evaluate=lambda: self._eval_retriever(), after_step=after_step))
        self.retriever.eval()
        self.dist.on_main(self.retriever.save, self.layout.retriever_dir)
        if joint:
            self.reader.model.eval()
            self.dist.on_main(self.reader.save, self.layout.reader_dir)
        if full:
            self._refresh_index()
            self._save_run_index()

    def _save_run_index(self) -> None:
        """The index of the trained passage tower, in the run directory (the run manifest points to it)."""
        save_any_index(self.index, self.layout.index_dir, self.dist)
        self.index_dir = self.layout.index_dir

    def _refresh_index(self) -> None:
        """Re-encode the corpus with the current passage tower and rebuild the index (ATLAS refresh)."""
        was = self.retriever.training
        self.index = refresh_any_index(self.index, self.passages, self.retriever, self.dist,
                                       progress=self.progress)
        self.retriever.train(was)
        self._log({"event": "index_refresh", "passages": len(self.passages)})

    # ------------------------------------------------------------------ the shared optimisation loop
    def _optimise(self, loop: Loop) -> None:
        """The one training loop: ``loop.steps`` optimiser steps over micro-batches of
        ``loop.micro_loss``, from ``loop.state`` (a resumed stage continues where it stopped)."""
        cfg = self.config
        name, stage_idx, state, total_steps = loop.name, loop.stage_idx, loop.state, loop.steps
        params, optimizer, scheduler, module = loop.params, loop.optimizer, loop.scheduler, loop.module
        bar = tqdm(total=total_steps, initial=state.step, desc=name, unit="step", disable=not self.progress)
        replica = self.dist.wrap(module, params)  # DDP over the trainable parameters when distributed
        while state.step < total_steps:
            step = state.step
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            finite = True
            for micro in range(cfg.grad_accumulation):
                indices = self.dist.shard(batch_indices(step * cfg.grad_accumulation + micro, loop.batch_size,
                                                        loop.n_examples, cfg.seed, stage_idx))
                with replica.accumulate(sync=micro == cfg.grad_accumulation - 1):
                    loss = replica(loop.micro_loss, indices) / cfg.grad_accumulation
                    if not self.dist.all_true(torch.isfinite(loss)):
                        finite = False
                        break
                    loss.backward()
                total += float(loss.detach())
            total = self.dist.mean(total)  # the global-batch loss
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)) if finite else math.nan
            if finite and math.isfinite(grad_norm):
                optimizer.step()
                state.bad_steps = 0
                row = {"stage": name, "step": step + 1, "loss": total, "lr": scheduler.get_last_lr()[0],
                       "grad_norm": grad_norm}
            else:
                optimizer.zero_grad(set_to_none=True)
                state.bad_steps += 1
                row = {"stage": name, "step": step + 1, "skipped": "non-finite loss or gradient",
                       "consecutive_bad": state.bad_steps}
                if state.bad_steps >= cfg.max_bad_steps:
                    self._log(row)
                    raise TrainingDivergedError(
                        f"{name}: {state.bad_steps} consecutive steps had a non-finite loss or gradient "
                        f"(last at step {step + 1}); lower the learning rate or check the data")
            scheduler.step()
            state.step += 1
            self._log(row)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.4f}")
            if loop.after_step is not None:
                loop.after_step(state.step)
            if loop.evaluate is not None and ((cfg.eval_every and state.step % cfg.eval_every == 0)
                                              or state.step == total_steps):
                was_training = module.training
                self._log({"stage": name, "step": state.step, "event": "eval", **loop.evaluate()})
                module.train(was_training)
            if loop.checkpoint and state.step % cfg.save_every == 0 and state.step < total_steps:
                self._checkpoint(stage_idx, state, module, optimizer, scheduler)
        bar.close()

    def _checkpoint(self, stage_idx, state: StageState, module, optimizer, scheduler) -> None:
        if self.dist.is_main:
            save_checkpoint(self.run_dir, {
                "stage": stage_idx, "step": state.step, "bad_steps": state.bad_steps,
                "params": trainable_state(module), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "rng": rng_state(),
            })
        self.dist.barrier()

    def _restore(self, stage_idx, ckpt, module, optimizer, scheduler) -> StageState:
        if ckpt is None or ckpt["stage"] != stage_idx:
            return StageState(stage_idx, 0, 0)
        load_trainable_state(module, ckpt["params"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        return StageState(stage_idx, ckpt["step"], ckpt.get("bad_steps", 0))

    # ------------------------------------------------------------------ evaluation during training
    @torch.no_grad()
    def _eval_retriever(self) -> dict:
        if not self.dev_examples:
            return {}
        questions = [e.question for e in self.dev_examples]
        gold = [e.gold_passage_ids for e in self.dev_examples]
        ids, _ = self._retrieve(questions, max(10, self.config.n_passages), dense=True)  # what trains
        out = {f"dev_{k}": v for k, v in recall_at_k(ids, gold, (1, 5)).items() if k.startswith("gold")}
        if self.first_stage != "dense":  # and what the reader reads
            ids, _ = self._retrieve(questions, max(10, self.config.n_passages))
            out.update({f"dev_{self.first_stage}_{k}": v for k, v in recall_at_k(ids, gold, (1, 5)).items()
                        if k.startswith("gold")})
        out.update(self._indicators())
        return out

    @torch.no_grad()
    def _eval_reader(self) -> dict:
        if not self.dev_examples:
            return {}
        self.reader.model.eval()
        examples = self.dev_examples[: min(len(self.dev_examples), 32)]
        _, retrieved = self._retrieve([e.question for e in examples], self.config.n_passages)
        losses = []
        for start in range(0, len(examples), self.config.reader_batch_size):
            part = list(range(start, min(len(examples), start + self.config.reader_batch_size)))
            batch = self.reader.batch([examples[i].question for i in part], [retrieved[i] for i in part],
                                      [examples[i].answers[0] for i in part], with_labels=True)
            losses.append(float(self.reader.loss(batch)) * len(part))
        out = {"dev_lm_loss": sum(losses) / len(examples)}
        out.update(self._indicators())
        return out

    def _indicators(self) -> dict:
        if self.indicator_hook is None or self.config.indicator_questions == 0:
            return {}
        examples = self.dev_examples[: self.config.indicator_questions]
        _, retrieved = self._retrieve([e.question for e in examples], self.config.n_passages)
        return self.indicator_hook(self.reader, examples, retrieved)

    # ------------------------------------------------------------------ bookkeeping
    def _log(self, row: dict) -> None:
        if not self.dist.is_main:
            return
        append_jsonl(self.metrics_path, {"time": round(time.time(), 3), **row})

    def _truncate_metrics(self, state: StageState) -> None:
        """Drop log lines written after the checkpoint we resume from, so the log reads as one run."""
        if not self.metrics_path.is_file():
            return
        stage_name = self.config.stages[state.stage]
        names = list(self.config.stages)
        keep = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the kill
            row_stage = row.get("stage")
            if row_stage in names and names.index(row_stage) > state.stage:
                continue
            if row_stage == stage_name and row.get("step", 0) > state.step:
                continue
            keep.append(line)
        with atomic_path(self.metrics_path) as tmp:
            tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")

    def _write_manifest(self, stages_done: list[str], final: bool, wall: float | None = None) -> dict:
        cfg = self.config
        reader_dir = self.layout.reader_dir
        retr_dir = self.layout.retriever_dir
        init = _read_manifest(Path(cfg.init_run)) if cfg.init_run else None
        where = self.layout.part_reference  # own parts relative to the run, the rest absolute
        manifest = {
            "setting": cfg.setting,
            "stages_done": stages_done,
            "final": final,
            "reader": where(reader_dir if reader_dir.is_dir() else (init["reader"] if init else cfg.reader)),
            "retriever": where(retr_dir if retr_dir.is_dir() else (init["retriever"] if init else cfg.retriever)),
            "index": where(self.index_dir),
            "passage_tower_changed": cfg.retriever_training == "full" and not cfg.pilot_only,
            "first_stage": {k: v for k, v in getattr(self, "first_stage_record", {}).items() if k != "hybrid_tuning"},
        }
        if wall is not None:
            manifest["wall_seconds"] = round(wall, 1)
        manifest["provenance"] = self.provenance.record()
        self.dist.on_main(write_json, self.layout.manifest_path, manifest)
        return manifest


def _absolute_inputs(config: TrainConfig) -> TrainConfig:
    """The config as stored in the run: inputs outside the run (data, index, distractors, the init run,
    model directories) as absolute paths, so ``--resume`` works from any working directory."""
    from dataclasses import replace

    values = {}
    for name in ("data", "index", "distractors", "init_run", "reader", "retriever"):
        value = getattr(config, name)
        if value and Path(value).exists():
            values[name] = str(Path(value).resolve())
    return replace(config, **values)


def _read_manifest(run_dir: Path) -> dict:
    return RunDir(run_dir).manifest()


__all__ = ["Trainer", "TrainConfig", "teacher_accuracy", "PassageIndex"]
