"""The SDPA capture must equal a direct computation from eager ``output_attentions`` and ``v_proj``."""

from __future__ import annotations

import pytest
import torch

from attnrag.data.records import Passage
from attnrag.distill.teacher import Teacher, TeacherConfig, aggregate_spans

from helpers import tiny_reader

PASSAGES = [
    [Passage("a", "Alpha", "Alpha was born in Velmora."), Passage("b", "Beta", "Beta likes green tea and long walks.")],
    [Passage("c", "Gamma", "Gamma founded the Orrin guild in 1802 with friends."), Passage("d", "Delta", "Delta is red.")],
]
QUESTIONS = ["Where was Alpha born?", "Who founded the Orrin guild?"]
ANSWERS = ["Velmora", "Gamma of the north"]


def reference_token_scores(reader, batch, signal: str, first_only: bool = False) -> torch.Tensor:
    """Eager attention maps x per-head value norms, straight from the model's own tensors."""
    model = reader.model
    cfg = model.config
    n_kv, head_dim = cfg.num_key_value_heads, cfg.head_dim
    groups = cfg.num_attention_heads // n_kv
    values, hooks = {}, []
    for i, layer in enumerate(model.model.layers):
        hooks.append(layer.self_attn.v_proj.register_forward_hook(
            lambda mod, inp, out, i=i: values.__setitem__(i, out)))
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                        position_ids=batch.position_ids, output_attentions=True)
    finally:
        model.set_attn_implementation("attnrag_sdpa")
        for h in hooks:
            h.remove()
    B, L = batch.input_ids.shape
    ref = torch.zeros(B, L)
    for layer, att in enumerate(out.attentions):  # [B, H, L, L]
        vnorm = values[layer].view(B, L, n_kv, head_dim).norm(dim=-1).transpose(1, 2)  # [B, KV, L]
        vnorm = vnorm.repeat_interleave(groups, dim=1)  # query head h uses kv head h // groups
        for b in range(B):
            start, end = batch.answer_spans[b]
            rows = [start - 1] if first_only else list(range(start - 1, end - 1))
            x = att[b][:, rows, :]
            if signal == "norm":
                x = x * vnorm[b][:, None, :]
            ref[b] += x.mean(0).mean(0) / cfg.num_hidden_layers
    return ref


@pytest.mark.parametrize("signal", ["prob", "norm"])
@pytest.mark.parametrize("first_only", [False, True])
def test_capture_matches_output_attentions(signal, first_only):
    reader = tiny_reader()
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS)
    got = reader.capture_token_attention(batch, signal=signal, first_token_only=first_only)
    ref = reference_token_scores(reader, batch, signal, first_only)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-7)
    # padding positions receive nothing
    assert got[batch.attention_mask == 0].abs().max() == 0


def test_plain_probabilities_sum_to_one_per_layer():
    reader = tiny_reader()
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS)
    got = reader.capture_token_attention(batch, signal="prob")
    assert torch.allclose(got.sum(-1), torch.ones(2), atol=1e-5)


def test_logits_signal_matches_direct_qk():
    reader = tiny_reader(layers=1)
    batch = reader.batch(QUESTIONS[:1], PASSAGES[:1], ANSWERS[:1])
    model = reader.model
    captured = {}
    attn = model.model.layers[0].self_attn
    handle = attn.register_forward_hook(lambda m, args, kwargs, out: captured.update(kwargs), with_kwargs=True)
    q_hook = attn.q_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("q", o))
    k_hook = attn.k_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("k", o))
    got = reader.capture_token_attention(batch, signal="logits")
    handle.remove(), q_hook.remove(), k_hook.remove()
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    cfg = model.config
    L = batch.input_ids.shape[1]
    q = captured["q"].view(1, L, cfg.num_attention_heads, cfg.head_dim).transpose(1, 2)
    k = captured["k"].view(1, L, cfg.num_key_value_heads, cfg.head_dim).transpose(1, 2)
    cos, sin = captured["position_embeddings"]
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    k = k.repeat_interleave(cfg.num_attention_heads // cfg.num_key_value_heads, dim=1)
    logits = (q @ k.transpose(-1, -2)) * cfg.head_dim**-0.5  # [1, H, L, L]
    start, end = batch.answer_spans[0]
    rows = list(range(start - 1, end - 1))
    causal = torch.ones(L, L).tril().bool()
    ref = (logits[0][:, rows, :] * causal[rows]).mean(0).mean(0)
    assert torch.allclose(got[0], ref, rtol=1e-5, atol=1e-6)


def test_batching_does_not_change_scores():
    reader = tiny_reader()
    both = reader.capture_token_attention(reader.batch(QUESTIONS, PASSAGES, ANSWERS))
    alone = reader.capture_token_attention(reader.batch(QUESTIONS[:1], PASSAGES[:1], ANSWERS[:1]))
    offset = both.shape[1] - alone.shape[1]
    assert torch.allclose(both[0, offset:], alone[0], atol=1e-6)


def test_teacher_scores_are_span_sums():
    reader = tiny_reader()
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS)
    tokens = reader.capture_token_attention(batch)
    scores = Teacher(reader, TeacherConfig()).score(QUESTIONS, PASSAGES, ANSWERS)
    for b in range(2):
        for k, (s, e) in enumerate(batch.passage_spans[b]):
            assert scores[b, k] == pytest.approx(float(tokens[b, s:e].sum()), rel=1e-5)
    mean = aggregate_spans(tokens, batch.passage_spans, "mean")
    s, e = batch.passage_spans[0][0]
    assert mean[0, 0] == pytest.approx(float(tokens[0, s:e].mean()), rel=1e-5)
    top = aggregate_spans(tokens, batch.passage_spans, "topk", topk=2)
    assert top[0, 0] == pytest.approx(float(tokens[0, s:e].topk(2).values.sum()), rel=1e-5)


def test_shuffled_orders_map_scores_back_to_passages():
    """Each passage's score is the mean, over the orders the teacher drew, of the score that passage
    got in each order: recomputed here by scoring every recorded order with the plain teacher and
    mapping back by passage id (not by the index arithmetic the teacher uses)."""
    reader = tiny_reader()
    teacher = Teacher(reader, TeacherConfig(teacher="attn", shuffle_orders=3, seed=1))
    orders: list[list[list]] = []
    real = teacher._attention_scores

    def record(questions, passages, answers):
        orders.append([list(ps) for ps in passages])
        return real(questions, passages, answers)

    teacher._attention_scores = record
    shuffled = teacher.score(QUESTIONS, PASSAGES, ANSWERS)
    assert len(orders) == 3 and any(o != [list(ps) for ps in PASSAGES] for o in orders)
    plain_teacher = Teacher(reader, TeacherConfig(teacher="attn"))
    reference = torch.zeros_like(shuffled)
    for order in orders:
        scores = plain_teacher.score(QUESTIONS, order, ANSWERS)
        for b, ps in enumerate(order):
            for j, passage in enumerate(ps):
                reference[b, [p.id for p in PASSAGES[b]].index(passage.id)] += scores[b, j] / len(orders)
    torch.testing.assert_close(shuffled, reference, rtol=1e-5, atol=1e-7)
    # and the orders matter: position bias makes the average differ from the retrieved order's scores
    assert not torch.allclose(shuffled, plain_teacher.score(QUESTIONS, PASSAGES, ANSWERS))


def test_passage_spans_exclude_markers_and_cover_passage_text():
    reader = tiny_reader()
    enc = reader.encode(QUESTIONS[0], PASSAGES[0], ANSWERS[0])
    tok = reader.tokenizer
    first = tok.decode(enc.input_ids[enc.passage_spans[0][0]:enc.passage_spans[0][1]])
    assert first == "Alpha | Alpha was born in Velmora."
    assert tok.decode(enc.input_ids[enc.answer_span[0]:enc.answer_span[1]]) == "Velmora"
    assert enc.input_ids[enc.label_span[1] - 1] == tok.eos_token_id


def test_every_mask_form_gives_the_same_rows():
    """The model's mask reaches the capture as SDPA's boolean mask, eager's additive mask, or ``None``
    (no padding: SDPA's is_causal); all three must give the same scores as eager attention."""
    from attnrag.reader.capture import EAGER_IMPLEMENTATION

    reader = tiny_reader()
    padded = reader.batch(QUESTIONS, PASSAGES, ANSWERS)
    alone = reader.batch(QUESTIONS[:1], PASSAGES[:1], ANSWERS[:1])  # no padding: the mask is skipped
    for batch in (padded, alone):
        for signal in ("prob", "logits"):
            bool_mask = reader.capture_token_attention(batch, signal=signal)
            reader.model.set_attn_implementation(EAGER_IMPLEMENTATION)
            try:
                additive = reader.capture_token_attention(batch, signal=signal)
            finally:
                reader.model.set_attn_implementation("attnrag_sdpa")
            assert torch.allclose(bool_mask, additive, rtol=1e-5, atol=1e-6)
    assert torch.allclose(reader.capture_token_attention(alone, signal="prob"),
                          reference_token_scores(reader, alone, "prob"), rtol=1e-5, atol=1e-7)


def test_capture_raises_on_attention_sinks():
    """A keyword that changes attention beyond mask/scaling/soft-cap is refused, not ignored."""
    from attnrag.reader.capture import _capture_attention_forward
    from attnrag.errors import InputError

    q = torch.zeros(1, 2, 3, 4)
    with pytest.raises(InputError, match="s_aux"):
        _capture_attention_forward(torch.nn.Module(), q, q, q, None, s_aux=torch.zeros(2))
