"""Distillation loss and the likelihood teachers, against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from attnrag.data.records import Passage
from attnrag.distill.loss import distillation_loss, emdr_loss, retriever_logits
from attnrag.distill.teacher import Teacher, TeacherConfig

from helpers import tiny_reader

PASSAGES = [[Passage("a", "Alpha", "Alpha was born in Velmora."), Passage("b", "Beta", "Beta likes tea."),
             Passage("c", "Gamma", "Gamma is a painter.")]]
QUESTION, ANSWER = ["Where was Alpha born?"], ["Velmora"]


def test_kl_matches_hand_computation_with_batchmean():
    teacher = torch.tensor([[0.30, 0.10, 0.05], [0.2, 0.2, 0.9]])
    student = torch.tensor([[1.0, 2.0, 0.5], [0.1, 0.3, 0.2]])
    got = distillation_loss(teacher, student, tau_gold=0.1, tau_score=0.5)
    total = 0.0
    for t_row, s_row in zip(teacher.tolist(), student.tolist()):
        p = [math.exp(x / 0.1) for x in t_row]
        p = [x / sum(p) for x in p]
        q = [math.exp(x / 0.5) for x in s_row]
        q = [x / sum(q) for x in q]
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    assert got.item() == pytest.approx(total / 2, rel=1e-5)  # summed over K, averaged over questions


def test_kl_is_zero_when_student_matches_teacher_and_respects_mask():
    scores = torch.tensor([[0.3, 0.1, 0.05]])
    assert distillation_loss(scores, scores, 0.01, 0.01).item() == pytest.approx(0.0, abs=1e-6)
    mask = torch.tensor([[True, True, False]])
    masked = distillation_loss(scores, torch.tensor([[0.3, 0.1, 99.0]]), 0.01, 0.01, passage_mask=mask)
    assert masked.item() == pytest.approx(0.0, abs=1e-6)


def test_reader_gets_no_gradient_from_the_distillation_loss():
    reader = tiny_reader()
    reader.model.train()
    for p in reader.model.parameters():
        p.requires_grad_(True)
    teacher = Teacher(reader).score(QUESTION, PASSAGES, ANSWER)
    query = torch.nn.Parameter(torch.randn(1, 8))
    passages = torch.randn(1, 3, 8)
    loss = distillation_loss(teacher, retriever_logits(query, passages))
    loss.backward()
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert all(p.grad is None for p in reader.model.parameters())
    # the loss itself detaches its teacher: scores that carry a graph (a teacher computed with gradients
    # on, as an online path could) get none back. Without the .detach() in distillation_loss this fails.
    live = torch.nn.Parameter(teacher.detach().clone())
    distillation_loss(live, retriever_logits(query, passages)).backward()
    assert live.grad is None
    loglik = torch.nn.Parameter(torch.tensor([[-1.0, -2.0, -3.0]]))
    emdr_loss(loglik, retriever_logits(query, passages)).backward()
    assert loglik.grad is None


def test_emdr_loss_is_negative_log_marginal():
    loglik = torch.tensor([[-1.0, -3.0]])
    student = torch.tensor([[0.2, 0.1]])
    prior = torch.softmax(student / 0.5, -1)
    expected = -math.log(prior[0, 0] * math.exp(-1.0) + prior[0, 1] * math.exp(-3.0))
    assert emdr_loss(loglik, student, tau_score=0.5).item() == pytest.approx(expected, rel=1e-5)


def _direct_answer_logprob(reader, passages: list[Passage]) -> tuple[float, int]:
    """Sum of log p(answer tokens) with the full-vocabulary logits of the model's own forward."""
    enc = reader.encode(QUESTION[0], passages, ANSWER[0])
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logits = reader.model(input_ids=ids).logits[0].float()
    start, end = enc.label_span
    logp = torch.log_softmax(logits[start - 1:end - 1], -1)
    targets = ids[0, start:end]
    return float(logp.gather(-1, targets[:, None]).sum()), end - start


def test_pdist_is_mean_answer_loglik_given_each_passage_alone():
    reader = tiny_reader()
    got = Teacher(reader, TeacherConfig(teacher="pdist")).score(QUESTION, PASSAGES, ANSWER)
    for k, passage in enumerate(PASSAGES[0]):
        total, n = _direct_answer_logprob(reader, [passage])
        assert got[0, k].item() == pytest.approx(total / n, rel=1e-4)


def test_leave_one_out_is_loglik_drop_without_each_passage():
    reader = tiny_reader()
    got = Teacher(reader, TeacherConfig(teacher="loop")).score(QUESTION, PASSAGES, ANSWER)
    full, _ = _direct_answer_logprob(reader, PASSAGES[0])
    for k in range(3):
        without, _ = _direct_answer_logprob(reader, PASSAGES[0][:k] + PASSAGES[0][k + 1:])
        assert got[0, k].item() == pytest.approx(full - without, rel=1e-4, abs=1e-4)


def test_unknown_teacher_is_rejected():
    with pytest.raises(ValueError, match="teacher must be one of"):
        TeacherConfig(teacher="magic")


def test_emdr_teacher_uses_total_answer_loglik():
    reader = tiny_reader()
    got = Teacher(reader, TeacherConfig(teacher="emdr")).score(QUESTION, PASSAGES, ANSWER)
    total, _ = _direct_answer_logprob(reader, [PASSAGES[0][1]])
    assert got[0, 1].item() == pytest.approx(total, rel=1e-4)
