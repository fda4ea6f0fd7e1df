"""Distillation losses: ``KL(p_ATTN || p_RETR)`` and EMDR2's marginal likelihood.

Reduction: the KL is summed over the K passages of a question and averaged over questions
(PyTorch's ``reduction="batchmean"``). PyTorch's default ``"mean"`` would also divide by K,
silently shrinking the gradient as K grows; attnrag never uses it.
"""

from __future__ import annotations

import math

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

