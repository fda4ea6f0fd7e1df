"""FiDReader: spans, cross-attention capture vs eager maps, loss, generation, batching, save/load,
teachers, and the analysis view."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from attnrag.data.records import Passage
from attnrag.distill.teacher import TEACHERS, Teacher, TeacherConfig, aggregate_spans
from attnrag.reader.fid import FiDAnalysisView, FiDPromptConfig, FiDReader, as_analysis_reader, warm_start_fid
from attnrag.reader.prompt import PromptConfig

QUESTIONS = ["where was Dora Kelvane born ?", "who founded Brightmoor Mills ?", "what does Tam Orrick do ?"]
ANSWERS = ["Zaithorn", "Ilsa Vornet", "baker"]
PASSAGES = [
    [Passage("p1", "Dora Kelvane", "Dora Kelvane was born in Zaithorn in 1901 ."),
     Passage("p2", "Zaithorn", "Zaithorn is a small town by the river with a mill ."),
     Passage("p3", "Tam Orrick", "Tam Orrick works as a baker in Zaithorn .")],
    [Passage("p4", "Brightmoor Mills", "Brightmoor Mills was founded by Ilsa Vornet in 1880 ."),
     Passage("p5", "Ilsa Vornet", "Ilsa Vornet was a weaver .")],
    [Passage("p3", "Tam Orrick", "Tam Orrick works as a baker in Zaithorn ."),
     Passage("p1", "Dora Kelvane", "Dora Kelvane was born in Zaithorn in 1901 ."),
     Passage("p5", "Ilsa Vornet", "Ilsa Vornet was a weaver ."),
     Passage("p2", "Zaithorn", "Zaithorn is a small town by the river with a mill .")],
]


def word_tokenizer():
    """A T5-style word-level tokenizer (pad 0, </s> 1, <unk> 2, EOS appended) built on the test texts."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    prompt = FiDPromptConfig()
    texts = QUESTIONS + ANSWERS + [prompt.question_prefix, prompt.passage_prefix, "context:"]
    texts += [p.title + " " + p.text for ps in PASSAGES for p in ps]
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t)})
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def tiny_t5(seed: int = 0):
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = word_tokenizer()
    config = T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, num_heads=4, num_layers=2,
                      num_decoder_layers=2, d_ff=64, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
                      decoder_start_token_id=0)
    torch.manual_seed(seed)
    return T5ForConditionalGeneration(config).eval(), tokenizer


@pytest.fixture(scope="module")
def reader() -> FiDReader:
    model, tokenizer = tiny_t5()
    return FiDReader(model, tokenizer, FiDPromptConfig(max_passage_tokens=12))


@pytest.fixture(scope="module")
def bert2bert_dir(tiny_bert_dir, tmp_path_factory):
    return warm_start_fid(tmp_path_factory.mktemp("b2b") / "fid", encoder=tiny_bert_dir, seed=0)


def tokens(reader, ids) -> list[str]:
    return reader.tokenizer.convert_ids_to_tokens([int(i) for i in ids])


# --------------------------------------------------------------------------------------------- batching
def test_spans_cover_passage_content_only(reader):
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS, with_labels=True)
    k, lp = batch.n_passages, batch.passage_length
    assert k == 4 and batch.encoder_input_ids.shape == (3 * k, lp)
    assert batch.attention_mask.shape == (3, k * lp)
    ids = batch.encoder_ids
    for b, ps in enumerate(PASSAGES):
        assert len(batch.passage_spans[b]) == len(ps)
        for slot, ((s, e), p) in enumerate(zip(batch.passage_spans[b], ps, strict=True)):
            assert slot * lp <= s < e <= (slot + 1) * lp
            want = reader.tokenizer(f"{p.title} context: {p.text}", add_special_tokens=False)["input_ids"]
            want = want[:12]
            assert ids[b, s:e].tolist() == want
            assert batch.attention_mask[b, s:e].all()
            chunk = tokens(reader, ids[b, slot * lp : s])
            assert chunk[0] == "question" and chunk[-1] == ":" and "title" in chunk  # the prefix is outside
            assert "</s>" not in tokens(reader, ids[b, s:e])
        qs, qe = batch.question_spans[b]
        assert ids[b, qs:qe].tolist() == reader.tokenizer(QUESTIONS[b], add_special_tokens=False)["input_ids"]
    # question 2 has 2 passages: its slots 2 and 3 are never attended to
    assert not batch.attention_mask[1, 2 * lp :].any()
    assert batch.truncated_passages == sum(
        len(reader.tokenizer(f"{p.title} context: {p.text}", add_special_tokens=False)["input_ids"]) > 12
        for ps in PASSAGES for p in ps)


def test_decoder_side_is_shifted_answer(reader):
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS, with_labels=True)
    for b, answer in enumerate(ANSWERS):
        a = reader.tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert batch.answer_spans[b] == (0, len(a))
        assert batch.decoder_input_ids[b, : len(a) + 1].tolist() == [reader.start_id] + a
        assert batch.decoder_labels[b, : len(a) + 1].tolist() == a + [reader.eos_id]
        assert (batch.decoder_labels[b, len(a) + 1 :] == -100).all()
        # decoder-only alignment: labels[:, t + 1] is position t's target
        assert batch.labels[b, 1 : len(a) + 2].tolist() == a + [reader.eos_id]
        assert batch.labels[b, 0] == -100


# --------------------------------------------------------------------------------------------- capture
def eager_reference(reader, batch, signal: str, first_token_only: bool = False) -> torch.Tensor:
    """Token scores from eager ``output_attentions`` cross-attention maps and hooked value projections."""
    model = reader.model
    values, modules = [], reader.cross_attention_modules
    hooks = [(m.v if hasattr(m, "v") else m.value).register_forward_hook(lambda _m, _i, o: values.append(o))
             for m in modules]
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            enc = reader.encode_passages(batch)
            from transformers.modeling_outputs import BaseModelOutput

            out = model(encoder_outputs=BaseModelOutput(last_hidden_state=enc),
                        attention_mask=batch.attention_mask, decoder_input_ids=batch.decoder_input_ids,
                        decoder_attention_mask=batch.decoder_attention_mask, output_attentions=True,
                        use_cache=False)
    finally:
        model.set_attn_implementation("attnrag_sdpa")
        for h in hooks:
            h.remove()
    maps = out.cross_attentions
    assert len(maps) == len(values) == reader.num_layers
    n_b, n_s = batch.attention_mask.shape
    weights = torch.zeros(n_b, batch.decoder_input_ids.shape[1])
    for b, span in enumerate(batch.answer_spans):
        count = 1 if first_token_only else span[1] - span[0]
        weights[b, span[0] : span[0] + count] = 1.0 / count
    total = torch.zeros(n_b, n_s)
    for a, v in zip(maps, values, strict=True):
        heads = a.shape[1]
        x = a.float()
        if signal == "norm":
            vnorm = v.float().view(n_b, n_s, heads, -1).norm(dim=-1).transpose(1, 2)  # [B, H, S]
            x = x * vnorm[:, :, None, :]
        total += torch.einsum("bos,bo->bs", x.mean(1), weights) / reader.num_layers
    return total


@pytest.mark.parametrize("signal,first", [("norm", False), ("prob", False), ("norm", True)])
def test_capture_matches_eager_cross_attention_t5(reader, signal, first):
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS)
    got = reader.capture_token_attention(batch, signal=signal, first_token_only=first)
    want = eager_reference(reader, batch, signal, first)
    assert got.shape == batch.attention_mask.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    assert (got[batch.attention_mask == 0] == 0).all()


def test_t5_cross_attention_has_no_position_bias(reader):
    cross = reader.cross_attention_modules
    assert all(getattr(m, "is_cross_attention", False) for m in cross)
    assert len(cross) == reader.num_layers == 2
    assert not any(m.has_relative_attention_bias for m in cross)
    assert all(m.scaling == 1.0 for m in cross)  # T5: no 1/sqrt(d)


def test_capture_matches_eager_cross_attention_bert2bert(bert2bert_dir):
    b2b = FiDReader.from_pretrained(bert2bert_dir)
    assert b2b.model.config.model_type == "encoder-decoder" and b2b.num_layers == 2
    batch = b2b.batch(QUESTIONS, PASSAGES, ANSWERS)
    got = b2b.capture_token_attention(batch, signal="norm")
    torch.testing.assert_close(got, eager_reference(b2b, batch, "norm"), rtol=1e-5, atol=1e-7)
    ids = batch.encoder_ids
    _, e = batch.passage_spans[0][0]
    toks = b2b.tokenizer.convert_ids_to_tokens(ids[0, :e].tolist())
    assert toks[0] == "[CLS]" and "[SEP]" not in toks  # the BERT specials are outside the span


def test_batching_does_not_change_scores_or_likelihoods(reader):
    full = reader.batch(QUESTIONS, PASSAGES, ANSWERS, with_labels=True)
    together = aggregate_spans(reader.capture_token_attention(full), full.passage_spans)
    logp = reader.answer_logprobs(full)
    for b in range(len(QUESTIONS)):
        one = reader.batch([QUESTIONS[b]], [PASSAGES[b]], [ANSWERS[b]], with_labels=True)
        alone = aggregate_spans(reader.capture_token_attention(one), one.passage_spans)
        k = len(PASSAGES[b])
        torch.testing.assert_close(together[b, :k], alone[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(logp[b], reader.answer_logprobs(one)[0], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------- loss, generate
def test_loss_is_finite_and_trains_only_what_is_asked(reader):
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS, with_labels=True)
    reader.trainable_parameters(1)
    model = reader.model
    try:
        assert not model.shared.weight.requires_grad
        assert not model.encoder.block[0].layer[0].SelfAttention.q.weight.requires_grad
        assert model.encoder.block[1].layer[0].SelfAttention.q.weight.requires_grad
        # cross-attention trains in every layer (it is new in a warm start)
        assert model.decoder.block[0].layer[1].EncDecAttention.q.weight.requires_grad
        assert model.decoder.final_layer_norm.weight.requires_grad
        model.train()
        loss = reader.loss(batch)
        assert torch.isfinite(loss)
        loss.backward()
        assert model.decoder.block[1].layer[0].SelfAttention.q.weight.grad is not None
        # the loss is the mean of the per-token log-likelihoods
        model.eval()
        with torch.no_grad():
            n_tokens = (batch.decoder_labels != -100).sum()
            torch.testing.assert_close(-reader.answer_logprobs(batch).sum() / n_tokens, reader.loss(batch),
                                       rtol=1e-5, atol=1e-5)
    finally:
        model.zero_grad(set_to_none=True)
        model.requires_grad_(True)
        model.eval()
    assert len(reader.trainable_parameters(None)) == len(list(model.parameters()))
    model.requires_grad_(True)


def test_stopping_at_the_first_line_keeps_the_answers(reader):
    assert reader.generate(QUESTIONS, PASSAGES, max_new_tokens=6, batch_size=2) == \
        reader.generate(QUESTIONS, PASSAGES, max_new_tokens=6, batch_size=2, stop_at_first_line=False)


def test_generate_returns_strings(reader):
    out = reader.generate(QUESTIONS, PASSAGES, max_new_tokens=4, batch_size=2)
    assert len(out) == len(QUESTIONS) and all(isinstance(x, str) for x in out)


def test_bert2bert_warm_start_trains_and_generates(bert2bert_dir):
    import json

    b2b = FiDReader.from_pretrained(bert2bert_dir)
    info = json.loads((bert2bert_dir / "attnrag_warm_start.json").read_text())
    assert any("crossattention" in n for n in info["newly_initialised_parameters"])
    new = info["newly_initialised_parameters"]
    assert not any("attention.self" in n and "crossattention" not in n for n in new)
    batch = b2b.batch(QUESTIONS, PASSAGES, ANSWERS, with_labels=True)
    assert torch.isfinite(b2b.loss(batch))
    out = b2b.generate(QUESTIONS, PASSAGES, max_new_tokens=3)
    assert len(out) == 3 and all(isinstance(x, str) for x in out)


# --------------------------------------------------------------------------------------------- save / load
def test_save_load_round_trip_and_factory(reader, tmp_path):
    from attnrag.reader.decoder import DecoderReader
    from attnrag.reader.factory import load_reader, reader_kind

    reader.save(tmp_path / "fid")
    loaded = FiDReader.from_pretrained(tmp_path / "fid")
    assert loaded.prompt == reader.prompt and loaded.kind == "fid"
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS, with_labels=True)
    again = loaded.batch(QUESTIONS, PASSAGES, ANSWERS, with_labels=True)
    torch.testing.assert_close(loaded.capture_token_attention(again), reader.capture_token_attention(batch))
    torch.testing.assert_close(loaded.loss(again), reader.loss(batch))
    # a decoder-only PromptConfig contributes its budgets only
    budgeted = FiDReader.from_pretrained(tmp_path / "fid", prompt=PromptConfig(max_passage_tokens=5))
    assert budgeted.prompt.max_passage_tokens == 5
    assert budgeted.prompt.passage_text == reader.prompt.passage_text

    assert reader_kind(tmp_path / "fid") == "fid"
    assert isinstance(load_reader(tmp_path / "fid"), FiDReader)
    from helpers import save_tiny_reader

    save_tiny_reader(tmp_path / "llama")
    assert reader_kind(tmp_path / "llama") == "decoder"
    assert isinstance(load_reader(tmp_path / "llama"), DecoderReader)


# ------------------------------------------------------------------------------------ teacher, analysis
@pytest.mark.parametrize("teacher", TEACHERS)
def test_every_teacher_scores_with_fid(reader, teacher):
    scores = Teacher(reader, TeacherConfig(teacher=teacher)).score(QUESTIONS, PASSAGES, ANSWERS)
    assert scores.shape == (3, 4)
    for b, ps in enumerate(PASSAGES):
        assert torch.isfinite(scores[b, : len(ps)]).all()


def test_analysis_view_reads_the_right_tokens(reader):
    from attnrag.analysis.indicators import measure
    from attnrag.analysis.token_attention import token_attention

    view = as_analysis_reader(reader)
    assert isinstance(view, FiDAnalysisView) and view.reader is reader and as_analysis_reader("x") == "x"
    items = token_attention(view, QUESTIONS, PASSAGES, ANSWERS, signal="norm")
    for item, answer, question in zip(items, ANSWERS, QUESTIONS, strict=True):
        assert item.answer_ids.tolist() == reader.tokenizer(answer, add_special_tokens=False)["input_ids"]
        assert item.question_ids.tolist() == reader.tokenizer(question, add_special_tokens=False)["input_ids"]
        assert np.isclose(item.attention.sum(), 1.0)
    results = measure(view, QUESTIONS, PASSAGES, ANSWERS, signal="prob", relatedness="lexical")
    assert len(results) == 3 and all("answer_attn_share" in r.stats for r in results)
    with pytest.raises(AttributeError):  # a raw FiD batch has no single input_ids sequence
        token_attention(reader, QUESTIONS, PASSAGES, ANSWERS)
