"""Distillation losses: ``KL(p_ATTN || p_RETR)``, the in-batch KL / cross-entropy, and EMDR2's marginal
likelihood; the loss objects at the end take any target of :mod:`attnrag.distill.targets`.

Reduction: the KL is summed over the K passages of a question and averaged over questions
(PyTorch's ``reduction="batchmean"``). PyTorch's default ``"mean"`` would also divide by K,
silently shrinking the gradient as K grows; attnrag never uses it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


# The student's temperature when the config leaves it open, per similarity. Cosine scores lie in
# [-1, 1]; 0.02 (a scale of 50) was the best of 0.005-0.2 on the demo world's dev split (gold recall@1
# 0.743 against 0.660 at sentence-transformers' usual 0.05; docs/method.md, "The student's temperature").
# Dot products are ATLAS's: divided by sqrt(dim), then 0.01.
DEFAULT_TAU_SCORE = {"cosine": 0.02, "dot": 0.01}


def student_temperature(similarity: str, tau_score: float | None = None,
                        scale_by_dim: bool | None = None) -> tuple[float, bool]:
    """``(tau_score, scale_by_dim)`` for a retriever scored with ``similarity``; ``None`` = the default.

    ``scale_by_dim`` (ATLAS's division by sqrt(dim)) defaults to on for dot products only: applied to
    cosine scores it would shrink their [-1, 1] range by a further factor of ~20 (384 dims) and make
    the student distribution nearly uniform at any sensible temperature.
    """
    if similarity not in DEFAULT_TAU_SCORE:
        raise ValueError(f"unknown similarity {similarity!r}; expected one of {sorted(DEFAULT_TAU_SCORE)}")
    tau = DEFAULT_TAU_SCORE[similarity] if tau_score is None else float(tau_score)
    scale = (similarity == "dot") if scale_by_dim is None else bool(scale_by_dim)
    return tau, scale


def retriever_logits(query_emb: torch.Tensor, passage_emb: torch.Tensor, scale_by_dim: bool = True) -> torch.Tensor:
    """``[B, K]`` inner products of each query with its K passages (cosines for normalised embeddings),
    divided by sqrt(dim) when ``scale_by_dim`` (ATLAS, for dot products)."""
    scores = torch.einsum("bd,bkd->bk", query_emb, passage_emb)
    return scores / math.sqrt(query_emb.shape[-1]) if scale_by_dim else scores


def distillation_loss(teacher_scores: torch.Tensor, student_scores: torch.Tensor, tau_gold: float = 0.01,
                      tau_score: float = 0.01, passage_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``KL(softmax(teacher / tau_gold) || softmax(student / tau_score))``, batchmean.

    The teacher is detached: the reader never receives gradient from this loss (tested).
    ``passage_mask`` ``[B, K]`` marks real passages when questions have fewer than K.
    """
    teacher = teacher_scores.detach().float() / tau_gold
    student = student_scores.float() / tau_score
    if passage_mask is not None:
        teacher = teacher.masked_fill(~passage_mask, float("-inf"))
        student = student.masked_fill(~passage_mask, float("-inf"))
    target = torch.softmax(teacher, dim=-1)
    log_student = torch.log_softmax(student, dim=-1)
    log_target = torch.log_softmax(teacher, dim=-1)
    terms = target * (log_target - log_student)
    terms = torch.where(target > 0, terms, torch.zeros_like(terms))
    return terms.sum(-1).mean()


def emdr_loss(passage_loglik: torch.Tensor, student_scores: torch.Tensor, tau_score: float = 0.01) -> torch.Tensor:
    """EMDR2 (Singh et al. 2021): ``-log sum_k p_RETR(k|q) p(a|q,d_k)`` with the reader likelihood fixed.

    ``passage_loglik`` is the answer log-likelihood given each passage alone ``[B, K]`` (detached:
    here, as for the other teachers, only the retriever is trained by this loss).
    """
    log_prior = torch.log_softmax(student_scores.float() / tau_score, dim=-1)
    return -torch.logsumexp(log_prior + passage_loglik.detach().float(), dim=-1).mean()



# ---------------------------------------------------------------------------------------------------
# Losses as small objects over one batch of targets (the target and the loss are separate choices).


@dataclass
class TargetBatch:
    """The targets of a batch of B questions over a pool of P passages (the union of their candidates).

    ``target`` ``[B, P]``: each question's target probabilities (0 off its own candidates); ``own``:
    its own candidates; ``excluded``: passages that are neither target nor negative for it;
    ``scores``: the teacher's raw scores on its own candidates (EMDR reads them; 0 elsewhere).
    """

    target: torch.Tensor
    own: torch.Tensor
    excluded: torch.Tensor
    scores: torch.Tensor | None = None

    @classmethod
    def over_candidates(cls, teacher_scores: torch.Tensor, tau_gold: float) -> TargetBatch:
        """Every question with its own K candidates only (the pool is not shared): the online teacher."""
        scores = teacher_scores.detach().float()
        own = torch.ones_like(scores, dtype=torch.bool)
        return cls(torch.softmax(scores / tau_gold, dim=-1), own, ~own, scores)


def kl_to_target(target: torch.Tensor, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``KL(target || softmax(logits over valid columns))``, summed over columns, averaged over rows.

    ``target`` must be 0 outside ``valid``. For a one-hot target this is the cross-entropy.
    """
    log_student = torch.log_softmax(logits.float().masked_fill(~valid, float("-inf")), dim=-1)
    target = target.detach().float()
    safe = torch.where(target > 0, target, torch.ones_like(target))
    terms = torch.where(target > 0, target * (torch.log(safe) - log_student), torch.zeros_like(target))
    return terms.sum(-1).mean()


class CandidateKL:
    """KL over the question's own K candidates (FiD-KD, ATLAS): the other questions' passages in the
    batch play no part. For the attention target this is :func:`distillation_loss` (tested)."""

    name = "candidates"

    def __call__(self, logits: torch.Tensor, batch: TargetBatch) -> torch.Tensor:
        return kl_to_target(batch.target, logits, batch.own & ~batch.excluded)


class InBatchKL:
    """KL over every passage of the batch (in-batch negatives, as DPR and sentence-transformers'
    ``MultipleNegativesRankingLoss`` train): the question's target on its own candidates, every other
    question's candidates as further negatives. For a one-hot target, DPR's cross-entropy."""

    name = "in-batch"

    def __call__(self, logits: torch.Tensor, batch: TargetBatch) -> torch.Tensor:
        return kl_to_target(batch.target, logits, ~batch.excluded)


class EMDRLoss:
    """EMDR2 over the question's own candidates: ``-log sum_k p_RETR(k|q) p(a|q,d_k)`` (:func:`emdr_loss`)."""

    name = "emdr"

    def __call__(self, logits: torch.Tensor, batch: TargetBatch) -> torch.Tensor:
        if batch.scores is None:
            raise ValueError("EMDR needs the teacher's log-likelihoods")
        own = batch.own & ~batch.excluded
        log_prior = torch.log_softmax(logits.float().masked_fill(~own, float("-inf")), dim=-1)
        loglik = batch.scores.detach().float().masked_fill(~own, float("-inf"))
        return -torch.logsumexp(log_prior + loglik, dim=-1).mean()


LOSSES = {"candidates": CandidateKL, "in-batch": InBatchKL, "emdr": EMDRLoss}
