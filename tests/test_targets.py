"""Targets and losses as separate choices, each checked against a hand computation on three passages."""

from __future__ import annotations

import math

import pytest
import torch

from attnrag.distill.loss import (
    LOSSES,
    CandidateKL,
    EMDRLoss,
    InBatchKL,
    TargetBatch,
    distillation_loss,
    emdr_loss,
)
from attnrag.distill.targets import (
    Target,
    answer_gated_target,
    answer_target,
    gold_target,
    target_stats,
    teacher_target,
    teacher_top1_target,
)

CANDS = ["a", "b", "c"]
SCORES = [0.30, 0.32, 0.29]  # attention sums of three passages
TAU = 0.01


def by_hand_softmax(values, tau):
    exps = [math.exp(v / tau) for v in values]
    return [e / sum(exps) for e in exps]


def test_teacher_target_is_the_softmax_of_the_scores_at_tau_gold():
    t = teacher_target(CANDS, SCORES, TAU)
    e = [math.exp(30), math.exp(32), math.exp(29)]
    assert t.probs == pytest.approx([x / sum(e) for x in e], rel=1e-9)
    assert t.favourite == "b" and t.scores == SCORES and not t.excluded


def test_top1_is_the_teachers_favourite_first_of_ties():
    assert teacher_top1_target(CANDS, SCORES).probs == [0.0, 1.0, 0.0]
    assert teacher_top1_target(CANDS, [0.5, 0.5, 0.1]).probs == [1.0, 0.0, 0.0]


def test_answer_match_takes_the_first_bearing_candidate_and_excludes_the_others():
    t = answer_target(CANDS, [False, True, True])
    assert (t.candidates, t.probs, t.excluded) == (["b", "a"], [1.0, 0.0], frozenset({"c"}))
    assert answer_target(CANDS, [False, False, False]) is None


def test_answer_gated_renormalises_the_teacher_over_bearing_candidates():
    t = answer_gated_target(CANDS, SCORES, [True, False, True], TAU)
    inside = by_hand_softmax([SCORES[0], SCORES[2]], TAU)  # exp(30), exp(29) over their sum
    assert t.probs == pytest.approx([inside[0], 0.0, inside[1]], rel=1e-9)
    assert t.favourite == "a"  # the teacher's favourite "b" holds no answer
    # no bearing candidate: the soft teacher over all, or left out
    fallback = answer_gated_target(CANDS, SCORES, [False] * 3, TAU, "teacher")
    assert fallback.probs == pytest.approx(teacher_target(CANDS, SCORES, TAU).probs)
    assert answer_gated_target(CANDS, SCORES, [False] * 3, TAU, "drop") is None
    with pytest.raises(ValueError):
        answer_gated_target(CANDS, SCORES, [True] * 3, TAU, "sometimes")


def test_gold_target_inserts_an_unretrieved_gold_passage():
    assert gold_target(CANDS, ["c"], 3).candidates == ["c", "a", "b"]
    t = gold_target(CANDS, ["z", "b"], 3)
    assert (t.candidates, t.excluded) == (["b", "a", "c"], frozenset({"z"}))
    assert gold_target(CANDS, ["z"], 3).candidates == ["z", "a", "b"]
    assert gold_target(CANDS, [], 3) is None


def test_a_target_must_be_a_distribution():
    with pytest.raises(ValueError):
        Target(["a", "b"], [0.5, 0.6])
    with pytest.raises(ValueError):
        Target(["a"], [0.5, 0.5])


def _two_questions():
    """q0 owns a, b; q1 owns b, c (pool a, b, c); q0's target 0.75 / 0.25, q1's one-hot on c."""
    target = torch.tensor([[0.75, 0.25, 0.0], [0.0, 0.0, 1.0]])
    own = torch.tensor([[True, True, False], [False, True, True]])
    excluded = torch.zeros_like(own)
    logits = torch.tensor([[2.0, 1.0, 0.5], [0.3, 1.5, 0.7]])
    return logits, TargetBatch(target, own, excluded, torch.zeros(2, 3))


def test_candidate_kl_by_hand():
    logits, batch = _two_questions()
    # q0 over {a, b}: log softmax(2, 1); q1 over {b, c}: log softmax(1.5, 0.7)
    z0 = math.log(math.exp(2) + math.exp(1))
    kl0 = 0.75 * (math.log(0.75) - (2 - z0)) + 0.25 * (math.log(0.25) - (1 - z0))
    z1 = math.log(math.exp(1.5) + math.exp(0.7))
    kl1 = 1.0 * (0 - (0.7 - z1))
    assert float(CandidateKL()(logits, batch)) == pytest.approx((kl0 + kl1) / 2, rel=1e-6)


def test_in_batch_kl_by_hand_sees_every_passage_of_the_batch():
    logits, batch = _two_questions()
    z0 = math.log(math.exp(2) + math.exp(1) + math.exp(0.5))
    kl0 = 0.75 * (math.log(0.75) - (2 - z0)) + 0.25 * (math.log(0.25) - (1 - z0))
    z1 = math.log(math.exp(0.3) + math.exp(1.5) + math.exp(0.7))
    kl1 = -(0.7 - z1)  # the cross-entropy of the one positive
    assert float(InBatchKL()(logits, batch)) == pytest.approx((kl0 + kl1) / 2, rel=1e-6)
    # an excluded passage is neither target nor negative: q1 without a
    batch.excluded[1, 0] = True
    z1x = math.log(math.exp(1.5) + math.exp(0.7))
    assert float(InBatchKL()(logits, batch)) == pytest.approx((kl0 - (0.7 - z1x)) / 2, rel=1e-6)


def test_one_hot_in_batch_is_torchs_cross_entropy():
    logits = torch.randn(4, 7)
    target = torch.zeros(4, 7)
    positives = torch.tensor([0, 3, 6, 2])
    target[torch.arange(4), positives] = 1.0
    batch = TargetBatch(target, torch.ones(4, 7, dtype=torch.bool), torch.zeros(4, 7, dtype=torch.bool))
    expected = torch.nn.functional.cross_entropy(logits, positives)
    assert float(InBatchKL()(logits, batch)) == pytest.approx(float(expected), rel=1e-6)


def test_candidate_kl_of_the_teacher_target_is_todays_distillation_loss():
    torch.manual_seed(0)
    teacher, student = torch.rand(5, 3) * 0.05, torch.rand(5, 3)
    probs = torch.tensor([teacher_target(CANDS, row.tolist(), TAU).probs for row in teacher], dtype=torch.float32)
    own = torch.ones(5, 3, dtype=torch.bool)
    batch = TargetBatch(probs, own, ~own, teacher)
    assert float(CandidateKL()(student / 0.02, batch)) == pytest.approx(
        float(distillation_loss(teacher, student, TAU, 0.02)), rel=1e-5)
    online = TargetBatch.over_candidates(teacher, TAU)
    assert float(CandidateKL()(student / 0.02, online)) == pytest.approx(
        float(distillation_loss(teacher, student, TAU, 0.02)), rel=1e-5)
    assert float(EMDRLoss()(student / 0.02, online)) == pytest.approx(float(emdr_loss(teacher, student, 0.02)),
                                                                       rel=1e-6)


def test_the_losses_never_train_the_teacher():
    teacher = torch.rand(2, 3, requires_grad=True)
    student = torch.rand(2, 3, requires_grad=True)
    for name, loss in LOSSES.items():
        batch = TargetBatch.over_candidates(teacher, TAU)
        loss()(student, batch).backward()
        assert teacher.grad is None, name
        assert student.grad is not None


def test_target_stats_count_favourites_against_the_first_stage():
    targets = [teacher_target(CANDS, SCORES, TAU), answer_target(CANDS, [True, False, False]), None]
    gold = [["a"], ["a"], ["c"]]
    holds = {("a"): True, "b": False, "c": True}
    stats = target_stats(targets, gold, [CANDS] * 3, lambda i, pid: holds[pid])
    assert stats["questions"] == 3 and stats["left_out"] == 1
    assert stats["favourite_is_gold"] == 0.5  # b (teacher) is not gold, a (answer) is
    assert stats["first_stage_top_is_gold"] == 1.0
    assert stats["favourite_holds_answer"] == 0.5


def test_disagreement_classes_by_hand():
    from attnrag.analysis.targets import classify

    # attention likes c (no answer); answer match takes a (bearing, not gold); gated takes b (gold)
    got = classify(["a", "b", "c"], [0.1, 0.2, 0.9], [True, True, False], {"b"})
    assert got == {"attention": "no answer", "answer": "other answer-bearing", "gated": "gold", "agree": False,
                   "gold_among_candidates": True, "answer_bearing": 2}
    none = classify(["a", "b"], [0.5, 0.1], [False, False], {"z"})
    assert (none["attention"], none["answer"], none["gated"], none["gold_among_candidates"]) == (
        "no answer", "none", "none", False)


def _questions(n, gold_at, answer_in, attention_top):
    """``n`` questions over three candidates a, b, c: the gold passage, which hold the answer 'zeta',
    and which one the teacher scores highest."""
    from attnrag.data.records import Passage, QAExample

    examples, candidates, scores = [], [], []
    for i in range(n):
        row = [Passage(f"{x}{i}", "", f"text {x} " + ("zeta" if x in answer_in else "other")) for x in "abc"]
        examples.append(QAExample(f"q{i}", "?", ["zeta"], [f"{gold_at}{i}"]))
        candidates.append(row)
        scores.append([0.9 if x == attention_top else 0.1 for x in "abc"])
    return examples, candidates, torch.tensor(scores)


def test_compare_targets_recommends_answer_match_when_the_reader_is_not_better():
    from attnrag.analysis.targets import compare_targets

    # the answer is in a (gold) and c; the reader prefers b (no answer): answer match is right
    got = compare_targets(*_questions(12, "a", "ac", "b"))
    assert got["recommended"] == "answer" and got["compared_on"] == 12
    assert got["versus_answer"]["answer_favourite_is_gold"] == 1.0
    assert got["versus_answer"]["teacher"]["favourite_is_gold"] == 0.0
    assert got["targets"]["answer"]["favourite_holds_answer"] == 1.0
    assert "no reader target is better" in got["message"]
    assert "12 dev questions" in got["message"] and got["split"] == "dev"
    # a run's cached training questions are named as such (scripts/teacher_vs_answer.py), not as dev
    named = compare_targets(*_questions(12, "a", "ac", "b"), split="cached training")
    assert "12 cached training questions" in named["message"] and "dev" not in named["message"]


def test_compare_targets_recommends_the_gated_reader_where_it_picks_the_gold_among_answer_bearing():
    from attnrag.analysis.targets import compare_targets

    # a and c both hold the answer, c is gold: rank (answer match) takes a, the reader prefers c
    got = compare_targets(*_questions(12, "c", "ac", "c"))
    assert got["recommended"] in ("teacher", "teacher-top1", "answer-gated")
    assert got["versus_answer"]["answer-gated (drop)"]["delta"] == 1.0
    # without gold ids nothing can be told apart: the cheaper target
    examples, candidates, scores = _questions(12, "c", "ac", "c")
    from dataclasses import replace

    unlabelled = [replace(e, gold_passage_ids=[]) for e in examples]
    assert compare_targets(unlabelled, candidates, scores)["decided_by"] == "no gold passage ids"


def test_each_teacher_has_its_own_temperature_and_attn_norm_keeps_today_s_target():
    """tau_gold null -> the teacher's own (distill.config.TEACHER_TAU); attn-norm's is the 0.01 every
    teacher shared before, so its target distribution is exactly what it was; an explicit tau_gold
    overrides every teacher's."""
    from attnrag.distill.config import TEACHER_TAU, TEACHERS, TeacherConfig
    from attnrag.distill.targets import teacher_target
    from attnrag.train.config import TrainConfig

    assert set(TEACHER_TAU) == set(TEACHERS)
    cfg = TrainConfig(data="d")
    assert cfg.tau_gold is None and cfg.teacher_tau == 0.01
    scores = [0.031, 0.012, 0.020]
    before = teacher_target(["a", "b", "c"], scores, 0.01).probs  # the pre-per-teacher default
    assert teacher_target(["a", "b", "c"], scores, cfg.teacher_tau).probs == before
    for name in TEACHERS:
        own = TrainConfig(data="d", teacher=TeacherConfig(teacher=name))
        assert own.teacher_tau == TEACHER_TAU[name]
        assert TrainConfig(data="d", teacher=TeacherConfig(teacher=name), tau_gold=0.5).teacher_tau == 0.5
