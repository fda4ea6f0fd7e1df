"""Token-level attention analysis: statistics against scipy/numpy, hand-built indicators, lexical matching,
HTML escaping, and analyze()/diagnose() end to end on tiny random models (seconds on CPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from hypothesis import given, settings
from hypothesis import strategies as st

from attnrag.analysis.analyze import analyze
from attnrag.analysis.diagnose import THRESHOLDS, combined_verdict, diagnose, teacher_check, verdict
from attnrag.analysis.indicators import (
    ATTENTION_BINS,
    PAPER_NQ,
    RHO_BINS,
    aggregate,
    histogram,
    json_safe,
    measure,
    question_stats,
    spearman,
    training_indicator_hook,
)
from attnrag.analysis.relatedness import (
    cosine_relatedness,
    decode_tokens,
    lexical_relatedness,
    normalize_token,
    percentile_threshold,
    related_mask,
    token_relatedness,
)
from attnrag.analysis.report import render_page, render_section
from attnrag.analysis.token_attention import normalize_attention, token_attention
from attnrag.data.records import Passage, QAExample
from attnrag.errors import InputError
from attnrag.models import model_dir

READER_DIR = model_dir("smollm2-135m-instruct")
RETRIEVER_DIR = model_dir("minilm-l6-v2")
needs_tokenizers = pytest.mark.skipif(
    not (READER_DIR / "tokenizer.json").is_file() or not (RETRIEVER_DIR / "config.json").is_file(),
    reason="SmolLM2 / MiniLM tokenizers not provisioned (attnrag models fetch)",
)

SCRIPT = "<script>alert(1)</script>"
PASSAGES = [
    Passage("p0", "Paris", "Paris is the capital and largest city of France."),
    Passage("p1", "Berlin", "Berlin is the capital of Germany, on the river Spree."),
    Passage("p2", "Rome", "Rome is the capital of Italy and was founded on seven hills."),
    Passage("p3", "Evil", f"{SCRIPT} & <b>bold</b> text about Madrid, the capital of Spain."),
]
EXAMPLES = [
    QAExample("q0", "What is the capital of France?", ["Paris"]),
    QAExample("q1", "Which river flows through Berlin?", ["Spree"]),
    QAExample("q2", "How many hills was Rome <b>founded</b> on?", ["seven"]),
]


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def tiny_reader():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from attnrag.reader.decoder import DecoderReader

    tok = AutoTokenizer.from_pretrained(READER_DIR)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=96, head_dim=16, intermediate_size=128,
                      num_hidden_layers=3, num_attention_heads=6, num_key_value_heads=2)
    return DecoderReader(LlamaForCausalLM(cfg).eval(), tok, name="tiny-llama")


@pytest.fixture(scope="module")
def tiny_retriever(tiny_bert_dir):
    from attnrag.retrieval.encoder import BiEncoder

    return BiEncoder.from_pretrained(tiny_bert_dir, device="cpu")


@pytest.fixture(scope="module")
def tiny_index(tiny_retriever):
    from attnrag.retrieval.index import build_index

    return build_index(PASSAGES, tiny_retriever, progress=False)


# ------------------------------------------------------------------------------------ statistics
def test_spearman_matches_scipy_and_is_nan_safe():
    rng = np.random.default_rng(0)
    x, y = rng.random(50), rng.random(50)
    y[::7] = y[0]  # ties
    assert spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))  # constant side: undefined, no warning
    assert math.isnan(spearman([1.0], [2.0]))
    # non-finite pairs are dropped, not propagated
    assert spearman([1, 2, np.nan, 3], [1, 2, 9, 3]) == pytest.approx(1.0)


def test_percentile_and_related_mask_match_numpy():
    rng = np.random.default_rng(1)
    rel = rng.normal(size=200)
    assert percentile_threshold(rel, 95) == pytest.approx(np.percentile(rel, 95))
    assert percentile_threshold(rel, 80) == pytest.approx(np.percentile(rel, 80))
    mask = related_mask(rel, 95)
    np.testing.assert_array_equal(mask, rel >= np.percentile(rel, 95))
    assert mask.sum() == 10
    # 0/1 relatedness with fewer than 5% matches: the 95th percentile is 0, yet only the matches count.
    binary = np.zeros(100)
    binary[[3, 50]] = 1.0
    assert np.percentile(binary, 95) == 0.0
    np.testing.assert_array_equal(np.flatnonzero(related_mask(binary, 95)), [3, 50])
    assert not related_mask(np.zeros(10)).any()  # constant: nothing is related
    assert not related_mask(np.full(5, np.nan)).any()


def test_normalize_attention():
    a = normalize_attention(np.array([1.0, 3.0, 4.0]))
    np.testing.assert_allclose(a, [0.125, 0.375, 0.5])
    assert np.isnan(normalize_attention(np.zeros(3))).all()


def test_hand_built_question_gives_known_indicators():
    """40 passage tokens, 2 answer-related ones holding half of the attention."""
    n = 40
    answer_rel = np.zeros(n)
    answer_rel[[10, 30]] = 1.0  # the 95th percentile of 40 values puts exactly these two at the top
    attention = np.full(n, 0.5 / 38)
    attention[[10, 30]] = 0.25
    question_rel = np.linspace(0, 1, n)  # unrelated to attention apart from the two peaks
    s = question_stats(attention, answer_rel, question_rel, percentile=95, top_k=2)
    assert s["n_tokens"] == 40 and s["n_answer_related"] == 2
    assert s["answer_attn_share"] == pytest.approx(0.5)
    assert s["answer_attn_mean"] == pytest.approx(0.25)
    assert s["topk_answer"] == pytest.approx(1.0)
    assert s["answer_rho"] == pytest.approx(spearmanr(attention, answer_rel).statistic)
    assert s["answer_rho"] == pytest.approx(1.0)  # two tied groups, perfectly ordered
    q_mask = question_rel >= np.percentile(question_rel, 95)
    assert s["n_question_related"] == 2
    assert s["question_attn_share"] == pytest.approx(attention[q_mask].sum())
    assert s["topk_question"] == 0.0
    # no question tokens: question stats are undefined, answer stats unaffected
    s2 = question_stats(attention, answer_rel, None)
    assert math.isnan(s2["question_rho"]) and s2["answer_attn_share"] == pytest.approx(0.5)


def test_aggregate_share_threshold_and_paper_bins():
    stats = [{"answer_attn_share": v, "answer_rho": r, "question_attn_share": v, "question_rho": r}
             for v, r in [(0.01, -0.9), (0.057, 0.1), (0.2, 0.5), (0.9, float("nan"))]]
    agg = aggregate(stats)
    assert agg["n_questions"] == 4
    assert agg["answer_attn_share_ge_0.057"] == pytest.approx(0.75)  # >= includes the edge
    assert agg["answer_rho_mean"] == pytest.approx(np.mean([-0.9, 0.1, 0.5]))
    assert agg["answer_rho_median"] == pytest.approx(0.1)
    assert agg["answer_rho_undefined"] == 1
    assert len(ATTENTION_BINS) == 9 and ATTENTION_BINS[1] == pytest.approx(0.057)
    np.testing.assert_allclose(RHO_BINS, np.linspace(-1, 1, 9))
    assert agg["hist"]["answer_attention"] == [1, 1, 0, 1, 0, 0, 0, 1]  # 0.9 is clipped into the last bin
    assert agg["hist"]["answer_rho"] == [1, 0, 0, 0, 1, 0, 1, 0]  # bins are [lo, hi)
    assert histogram([1.0, -1.0], RHO_BINS) == [1, 0, 0, 0, 0, 0, 0, 1]
    json.dumps(json_safe(agg), allow_nan=False)
    empty = aggregate([])
    assert empty["n_questions"] == 0 and json_safe(empty)["answer_rho_mean"] is None


# ------------------------------------------------------------------------------------ relatedness
def test_normalize_token():
    assert normalize_token("ĠParis") == "paris"
    assert normalize_token(" Paris,") == "paris"
    assert normalize_token("▁New") == "new"
    assert normalize_token("##ing") == "ing"
    assert normalize_token(" (") == ""
    assert normalize_token("Ça") == "ça"


def test_lexical_relatedness_strings():
    passage = ["The", " Eiffel", " Tower", " is", " in", " Paris", ",", " the", " capital", "."]
    rel = lexical_relatedness(passage, ["The", " paris", "?"])  # "The" is a stopword, "?" is empty
    np.testing.assert_array_equal(rel, [0, 0, 0, 0, 0, 1, 0, 0, 0, 0])


@needs_tokenizers
def test_lexical_relatedness_on_reader_tokens(tiny_reader):
    tok = tiny_reader.tokenizer
    ids = tok("The Eiffel Tower is in Paris, France.", add_special_tokens=False)["input_ids"]
    texts = decode_tokens(tok, ids)
    answer = decode_tokens(tok, tok("Paris", add_special_tokens=False)["input_ids"])
    assert answer == ["Paris"] and " Paris" in texts  # two different token ids, one normalised form
    rel = lexical_relatedness(texts, answer)
    assert rel.sum() == 1 and texts[int(np.argmax(rel))] == " Paris"


def test_cosine_relatedness_takes_best_target():
    p = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    t = np.array([[3.0, 0.0], [0.0, -1.0]])
    np.testing.assert_allclose(cosine_relatedness(p, t), [1.0, 0.0, np.sqrt(0.5)])
    assert np.isnan(cosine_relatedness(p, np.zeros((0, 2)))).all()


# ------------------------------------------------------------------------------------ reader
@needs_tokenizers
def test_token_attention_is_a_distribution_over_passage_tokens(tiny_reader):
    questions = [e.question for e in EXAMPLES]
    passages = [PASSAGES[:2], PASSAGES[1:4], PASSAGES[::-1]]
    answers = [e.answers[0] for e in EXAMPLES]
    views = token_attention(tiny_reader, questions, passages, answers, batch_size=4)
    single = token_attention(tiny_reader, questions, passages, answers, batch_size=1)
    tok = tiny_reader.tokenizer
    for view, one, ps in zip(views, single, passages, strict=True):
        assert view.attention.sum() == pytest.approx(1.0)
        assert (view.attention >= 0).all()
        np.testing.assert_allclose(view.attention, one.attention, atol=1e-5)  # padding changes nothing
        assert sorted(set(view.passage_index.tolist())) == list(range(len(ps)))
        for k, p in enumerate(ps):
            assert tok.decode(view.token_ids[view.passage_index == k]) == f"{p.title} | {p.text}"
        assert tok.decode(view.answer_ids) == view.answer
        assert tok.decode(view.question_ids) == view.question
    with pytest.raises(InputError):
        token_attention(tiny_reader, questions, passages, answers, signal="logits")


@needs_tokenizers
def test_embedding_relatedness_finds_the_answer_word(tiny_reader):
    view = token_attention(tiny_reader, [EXAMPLES[0].question], [PASSAGES[:2]], ["Paris"])[0]
    rel = token_relatedness(tiny_reader, view, "answer", "embedding")
    texts = decode_tokens(tiny_reader.tokenizer, view.token_ids)
    top = {texts[i] for i in np.flatnonzero(rel >= 1 - 1e-6)}
    assert top == {"Paris", " Paris"}  # title and in-text forms, via the space-prefixed answer form
    assert related_mask(rel, 95)[[i for i, t in enumerate(texts) if t == " Paris"]].all()
    hidden = token_attention(tiny_reader, [EXAMPLES[0].question], [PASSAGES[:2]], ["Paris"], layer=-1)[0]
    assert hidden.states["passage"].shape == (len(hidden.token_ids), 96)
    assert token_relatedness(tiny_reader, hidden, "question", "embedding").shape == (len(hidden.token_ids),)
    with pytest.raises(InputError):
        token_attention(tiny_reader, ["q"], [PASSAGES[:1]], ["a"], layer=9)


@needs_tokenizers
def test_measure_and_training_hook(tiny_reader):
    results = measure(tiny_reader, [e.question for e in EXAMPLES], [PASSAGES[:3]] * 3,
                      [e.answers[0] for e in EXAMPLES], relatedness="lexical")
    assert len(results) == 3 and all(r.view.states is None for r in results)
    for r in results:
        assert r.stats["n_answer_related"] >= 1  # every answer word occurs in the passages
        # recomputed by hand from the normalised attention and the related-token mask
        attention = np.asarray(r.view.attention, dtype=np.float64)
        mask = related_mask(r.answer_rel, 95)
        assert attention.sum() == pytest.approx(1.0)
        assert r.stats["answer_attn_share"] == pytest.approx(attention[mask].sum())
        assert r.stats["n_answer_related"] == int(mask.sum())
        expected_rho = spearmanr(attention, r.answer_rel).statistic
        assert r.stats["answer_rho"] == pytest.approx(expected_rho, nan_ok=True)
    tiny_reader.model.train()
    try:
        hook = training_indicator_hook(relatedness="lexical")
        out = hook(tiny_reader, EXAMPLES, [PASSAGES[:3]] * 3)
        assert tiny_reader.model.training  # the hook restores the trainer's mode
    finally:
        tiny_reader.model.eval()
    assert set(out) == {"ind_answer_attn_share_ge_0.057", "ind_answer_rho_mean", "ind_question_attn_mean"}
    # the hook's values are the per-question statistics of the same measurement, aggregated by hand
    shares = [r.stats["answer_attn_share"] for r in results]
    assert out["ind_answer_attn_share_ge_0.057"] == pytest.approx(np.mean([x >= 0.057 for x in shares]))
    rhos = [r.stats["answer_rho"] for r in results if math.isfinite(r.stats["answer_rho"])]
    assert out["ind_answer_rho_mean"] == (pytest.approx(np.mean(rhos)) if rhos else None)
    questions = [r.stats["question_attn_share"] for r in results if math.isfinite(r.stats["question_attn_share"])]
    assert out["ind_question_attn_mean"] == (pytest.approx(np.mean(questions)) if questions else None)
    with pytest.raises(InputError):
        measure(tiny_reader, ["q"], [PASSAGES[:1]], ["a"], relatedness="bogus")


# ------------------------------------------------------------------------------------ report
def test_html_escapes_passage_question_and_labels():
    section = render_section(
        f"run {SCRIPT}", f"why {SCRIPT}?", "<i>answer</i>",
        [{"title": f"t {SCRIPT}", "tokens": [(SCRIPT, 0.5, True, False), (" & ok", 0.5, False, True)]}],
        {"answer_rho": 0.25},
    )
    page = render_page([section])
    assert "<script" not in page.lower() and "<i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp; ok" in page and 'class="tok ans"' in page and 'class="tok qst"' in page


@needs_tokenizers
def test_analyze_writes_report(tmp_path, tiny_reader, tiny_retriever, tiny_index):
    from attnrag.data.formats import write_qa

    data = tmp_path / "dev.jsonl"
    write_qa(data, EXAMPLES)
    out = tmp_path / "report"
    report = analyze([tiny_reader, tiny_reader], data, n=2, out=out, labels=["first", "second <run>"],
                     n_passages=len(PASSAGES), index=tiny_index, retriever=tiny_retriever, progress=False)
    for name in ("indicators.json", "questions.jsonl", "attention_hist.png", "spearman_hist.png",
                 "indicators.png", "example.html"):
        assert (out / name).is_file(), name
    for name in ("attention_hist.png", "spearman_hist.png", "indicators.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "indicators.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert saved == report
    assert [r["label"] for r in saved["runs"]] == ["first", "second <run>"]
    run = saved["runs"][0]
    assert run["n_questions"] == 2 and run["wall_seconds"] >= 0
    # the provenance clock starts with the analysis: it covers every run's measured time
    assert saved["provenance"]["wall_seconds"] >= round(sum(r["wall_seconds"] for r in saved["runs"]), 1) - 0.1
    assert sum(run["hist"]["answer_attention"]) == 2
    assert saved["settings"]["signal"] == "prob" and saved["paper_nq"] == PAPER_NQ
    assert len((out / "questions.jsonl").read_text().splitlines()) == 4
    page = (out / "example.html").read_text()
    assert "<script" not in page.lower() and "<b>bold" not in page  # the corpus passage and label are escaped
    assert "&lt;run&gt;" in page and "alert" in page
    assert page.count("&lt;") >= 4  # the passage's tokens are escaped one by one
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temporaries
    with pytest.raises(InputError):
        analyze([tiny_reader], data, n=1, out=out, labels=["a", "b"], index=tiny_index,
                retriever=tiny_retriever)
    with pytest.raises(InputError):
        analyze([tiny_reader], data, n=1, out=out, retriever=tiny_retriever)  # no index for a bare reader


@needs_tokenizers
def test_analyze_accepts_run_directory_and_model_path(tmp_path, tiny_reader, tiny_retriever, tiny_index,
                                                      tiny_bert_dir):
    """A saved reader directory (off-the-shelf row) and a run directory with a run.json manifest."""
    tiny_reader.save(tmp_path / "reader")
    tiny_index.save(tmp_path / "index")
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"reader": str(tmp_path / "reader"),
                                              "retriever": str(tiny_bert_dir),
                                              "index": str(tmp_path / "index")}))
    report = analyze([str(tmp_path / "reader"), run], EXAMPLES, n=1, out=tmp_path / "out", n_passages=2,
                     index=tmp_path / "index", retriever=tiny_bert_dir, relatedness="lexical", device="cpu",
                     progress=False)
    assert [r["label"] for r in report["runs"]] == ["reader", "run"]
    first, second = report["runs"]
    assert first["answer_attn_share_mean"] == pytest.approx(second["answer_attn_share_mean"])


# ------------------------------------------------------------------------------------ diagnose
def test_verdict_reproduces_the_paper_ordering():
    labels = {name: verdict(row)[0] for name, row in PAPER_NQ.items()}
    assert labels == {
        "Off-the-shelf checkpoint": "uncertain",
        "Off-the-shelf distillation": "ineffective",
        "Fine-tuned distillation, Step 1": "effective",
        "Fine-tuned distillation, Step 2": "effective",
        "Atlas-large distillation": "effective",
    }
    label, message = verdict({"answer_attn_share_ge_0.057": 0.03, "answer_rho_mean": 0.05})
    assert label == "ineffective"
    assert "share 0.03, rho 0.05" in message and "fine-tune the reader first" in message
    assert verdict({"answer_attn_share_ge_0.057": None, "answer_rho_mean": 0.3})[0] == "unknown"
    assert verdict({"answer_attn_share_ge_0.057": 0.3, "answer_rho_mean": 0.15},
                   {"effective_rho": 0.1})[0] == "effective"
    assert set(THRESHOLDS) == {"effective_share", "effective_rho", "ineffective_share", "ineffective_rho"}


ORDER = {"ineffective": 0, "uncertain": 1, "effective": 2}


@settings(max_examples=300, deadline=None)
@given(share=st.floats(0, 1), rho=st.floats(-1, 1), more_share=st.floats(0, 1), more_rho=st.floats(0, 1),
       low=st.floats(-0.5, 0.5), width=st.floats(0, 0.5))
def test_verdict_is_monotone_in_both_indicators(share, rho, more_share, more_rho, low, width):
    """More attention on answer-related tokens, or a stronger correlation, never makes the verdict worse,
    under the shipped thresholds and under any rule with ineffective bounds below effective ones."""
    for thresholds in (None, {"ineffective_rho": low, "effective_rho": low + width,
                              "ineffective_share": 0.1, "effective_share": 0.25}):
        base = verdict({"answer_attn_share_ge_0.057": share, "answer_rho_mean": rho}, thresholds)[0]
        up = verdict({"answer_attn_share_ge_0.057": min(1.0, share + more_share),
                      "answer_rho_mean": min(1.0, rho + more_rho)}, thresholds)[0]
        assert ORDER[up] >= ORDER[base]


@settings(max_examples=200, deadline=None)
@given(share=st.floats(0, 1), rho=st.floats(-1, 1), teacher=st.floats(0, 1), retriever=st.floats(0, 1),
       n=st.integers(1, 2000))
def test_the_teacher_check_never_upgrades_a_verdict(share, rho, teacher, retriever, n):
    label, message = verdict({"answer_attn_share_ge_0.057": share, "answer_rho_mean": rho})
    d = teacher - retriever
    check = {"teacher_top1_gold": teacher, "retriever_top1_gold": retriever, "questions": n,
             "paired": {"difference": d, "low": d - 0.05, "high": d + 0.05}}
    assert ORDER[combined_verdict(label, message, check)[0]] <= ORDER[label]


def _reader(data, rho, gain, share=0.9):
    from attnrag.analysis.thresholds import MeasuredReader

    return MeasuredReader(data=data, row="step1", reader="r", share=share, rho=rho, gain=gain, teacher_top1=None,
                          retriever_top1=None, check_questions=None, scoring="cosine", source="test")


def test_threshold_fit_separates_readers_that_helped_from_those_that_did_not():
    from attnrag.analysis.thresholds import fit, leave_one_out, score

    readers = [_reader("a", 0.02, -0.04), _reader("a", 0.05, 0.0), _reader("b", 0.12, 0.06),
               _reader("b", 0.15, 0.09), _reader("c", 0.04, -0.01), _reader("c", 0.14, 0.05)]
    fitted = fit(readers)
    assert 0.05 < fitted["ineffective_rho"] <= fitted["effective_rho"] < 0.12
    assert score(readers, fitted) == {"correct": 6, "wrong": 0, "abstained": 0, "accuracy": 1.0, "coverage": 1.0}
    loo = leave_one_out(readers)
    assert loo["pooled"]["accuracy"] == 1.0 and set(loo["folds"]) == {"a", "b", "c"}
    # a data set that contradicts the others is judged wrong out of sample (not refitted onto itself)
    contrary = readers + [_reader("d", 0.15, -0.05), _reader("d", 0.13, -0.02)]
    fold = leave_one_out(contrary)["folds"]["d"]
    assert fold["wrong"] == 2 and fold["correct"] == 0


def test_committed_threshold_table_recomputes_and_the_code_uses_its_fit():
    """docs/results/analysis/thresholds.json (scripts/diagnose_thresholds.py): its scores follow from its
    own reader records, and diagnose.THRESHOLDS are the thresholds fitted on them."""
    from attnrag.analysis.thresholds import fit, from_records, leave_one_out, score

    path = Path(__file__).resolve().parents[1] / "docs" / "results" / "analysis" / "thresholds.json"
    table = json.loads(path.read_text())
    readers = from_records(table["readers"])
    assert len(readers) >= 10
    assert fit(readers) == table["fitted_thresholds"] == THRESHOLDS
    assert score(readers, THRESHOLDS) == table["fitted_score_in_sample"]
    recomputed = json.loads(json.dumps(leave_one_out(readers, by="data")))
    assert recomputed == table["leave_one_data_set_out"]


@needs_tokenizers
def test_diagnose_runs(tmp_path, tiny_reader, tiny_retriever, tiny_index):
    result = diagnose(tiny_reader, EXAMPLES, n=3, index=tiny_index, retriever=tiny_retriever, n_passages=3,
                      out=tmp_path / "diag.json", progress=False)
    indicator_label, indicator_message = verdict(result["indicators"])
    assert result["indicators_verdict"] == indicator_label
    assert (result["verdict"], result["message"]) == combined_verdict(indicator_label, indicator_message,
                                                                      result["teacher_check"])
    assert result["message"].startswith("attention distillation from this reader")
    assert result["indicators"]["n_questions"] == 3 and result["reader"] == "tiny-llama"
    check = result["teacher_check"]  # EXAMPLES have answers but no gold passage ids: only the label-free check
    assert check["teacher_top1_gold"] is None and check["questions"] == 0
    assert check["answer_check"]["questions_with_answers"] == 3
    assert result["settings"]["n_passages"] == 3 and result["settings"]["teacher"]["teacher"] == "attn-norm"
    assert result["decided_by"] in {"indicators", "teacher check (answers)"}
    # which target to train with: without gold ids the targets cannot be told apart, so the cheaper one
    assert result["targets"]["recommended"] == "answer" and result["targets"]["decided_by"] == "no gold passage ids"
    assert json.loads(Path(tmp_path / "diag.json").read_text()) == result


def test_combined_verdict_downgrades_a_teacher_below_its_student():
    label, message = verdict({"answer_attn_share_ge_0.057": 0.36, "answer_rho_mean": 0.16})
    assert label == "effective"
    # the FiD row of docs/results/paper: indicators "effective", teacher 0.253 vs retriever 0.480
    below = {"teacher_top1_gold": 0.253, "retriever_top1_gold": 0.480, "questions": 150,
             "paired": {"difference": -0.227, "low": -0.31, "high": -0.14}}
    new_label, new_message = combined_verdict(label, message, below)
    assert new_label == "ineffective"
    assert "0.25 vs retriever 0.48 on 150 questions" in new_message and "share 0.36, rho 0.16" in new_message
    assert message in new_message  # the indicators' verdict quoted whole, not re-parsed
    above = {"teacher_top1_gold": 0.927, "retriever_top1_gold": 0.480, "questions": 150,
             "paired": {"difference": 0.447, "low": 0.37, "high": 0.52}}
    kept_label, kept_message = combined_verdict(label, message, above)
    assert kept_label == "effective" and kept_message.startswith(message) and "0.93 vs retriever 0.48" in kept_message
    # a shortfall whose paired interval reaches above zero only caps the verdict
    close = {"teacher_top1_gold": 0.86, "retriever_top1_gold": 0.865, "questions": 200,
             "paired": {"difference": -0.005, "low": -0.04, "high": 0.03}}
    close_label, close_message = combined_verdict(label, message, close)
    assert close_label == "uncertain" and "0.86 vs retriever 0.86" in close_message
    # a record without the paired interval (an old log) falls back to the unpaired margin, and says so
    unpaired = {"teacher_top1_gold": 0.253, "retriever_top1_gold": 0.480, "questions": 150}
    old_label, note = combined_verdict(label, message, unpaired)
    assert old_label == "ineffective" and "no paired interval in this record" in note
    ineffective = verdict({"answer_attn_share_ge_0.057": 0.84, "answer_rho_mean": 0.05})
    assert combined_verdict(*ineffective, close)[0] == "ineffective"  # never upgraded
    assert combined_verdict(label, message, None) == (label, message)
    assert combined_verdict(label, message, {"teacher_top1_gold": None, "retriever_top1_gold": None,
                                             "questions": 3}) == (label, message)


GOLD_EXAMPLES = [QAExample(e.id, e.question, e.answers, [f"p{i}"]) for i, e in enumerate(EXAMPLES)]


def test_paired_difference_matches_a_hand_computation():
    from attnrag.evaluate.teacher import paired_difference

    # differences +1, 0, 0, -1, +1: mean 0.2; sample variance (0.64*2 + 0.04*2 + 1.44) / 4 = 0.7
    got = paired_difference([1, 1, 0, 0, 1], [0, 1, 0, 1, 0])
    half = 1.959963984540054 * (0.7 / 5) ** 0.5
    assert got["difference"] == pytest.approx(0.2) and got["n"] == 5
    assert (got["low"], got["high"]) == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))
    assert (got["teacher_only"], got["first_stage_only"]) == (2, 1)
    assert paired_difference([], [])["difference"] is None
    with pytest.raises(ValueError):
        paired_difference([1], [1, 0])


def test_the_label_free_check_counts_only_informative_questions_and_flat_rows_as_misses():
    import torch

    from attnrag.evaluate.teacher import answer_teacher_accuracy

    cands = [[PASSAGES[1], PASSAGES[0], PASSAGES[2]],   # q0 "Paris": only rank 1 holds it
             [PASSAGES[1], PASSAGES[0], PASSAGES[2]],   # q1 "Spree": only rank 0 holds it
             [PASSAGES[0], PASSAGES[1], PASSAGES[3]],   # q2 "seven": none holds it -> not informative
             [PASSAGES[1], PASSAGES[0], PASSAGES[2]]]   # q3 "Paris" again, but its teacher row is flat
    examples = EXAMPLES + [QAExample("q3", "Capital of France?", ["Paris"])]
    scores = torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.0, 0.0, 0.0]])
    got = answer_teacher_accuracy(scores, cands, examples)
    assert got["informative"] == 3 and got["questions_with_answers"] == 4
    # teacher hits: q0 yes (rank 1), q1 no (picks rank 1), q3 no (flat). first stage: q0 no, q1 yes, q3 no
    assert got["teacher_top1_answer"] == pytest.approx(1 / 3) and got["first_stage_top1_answer"] == pytest.approx(1 / 3)
    assert got["paired"]["difference"] == pytest.approx(0.0) and got["paired"]["teacher_only"] == 1
    every = [[PASSAGES[0], PASSAGES[0]]]  # both hold the answer: no teacher can be told from the first stage
    assert answer_teacher_accuracy(torch.tensor([[0.0, 1.0]]), every, EXAMPLES[:1])["informative"] == 0


def test_the_label_free_check_downgrades_and_names_itself():
    label, message = verdict({"answer_attn_share_ge_0.057": 0.36, "answer_rho_mean": 0.16})
    below = {"teacher_top1_gold": None, "answer_check": {
        "teacher_top1_answer": 0.2, "first_stage_top1_answer": 0.6, "informative": 80,
        "paired": {"difference": -0.4, "low": -0.55, "high": -0.25}}}
    new_label, new_message = combined_verdict(label, message, below)
    assert new_label == "ineffective" and "label-free" in new_message and "0.20 vs the first stage" in new_message
    from attnrag.analysis.diagnose import decided_by

    assert decided_by(label, new_label, below) == "teacher check (answers)"
    within = {"teacher_top1_gold": None, "answer_check": {
        "teacher_top1_answer": 0.55, "first_stage_top1_answer": 0.6, "informative": 80,
        "paired": {"difference": -0.05, "low": -0.15, "high": 0.05}}}
    assert combined_verdict(label, message, within)[0] == "uncertain"
    above = {"teacher_top1_gold": None, "answer_check": {
        "teacher_top1_answer": 0.8, "first_stage_top1_answer": 0.5, "informative": 80,
        "paired": {"difference": 0.3, "low": 0.2, "high": 0.4}}}
    assert combined_verdict(label, message, above)[0] == "effective"
    assert decided_by(label, label, above) == "indicators"
    # the gold check uses its paired interval where the record has one
    gold = {"teacher_top1_gold": 0.84, "retriever_top1_gold": 0.865, "questions": 200,
            "paired": {"difference": -0.025, "low": -0.06, "high": 0.01}}
    assert combined_verdict(label, message, gold)[0] == "uncertain"
    gold_below = {**gold, "paired": {"difference": -0.025, "low": -0.04, "high": -0.01}}
    assert combined_verdict(label, message, gold_below)[0] == "ineffective"


@needs_tokenizers
def test_teacher_check_matches_direct_teacher_scores(tiny_reader):
    from attnrag.distill.teacher import Teacher, TeacherConfig

    # candidates in retriever order; the gold passage first for q0, second for q1, absent for q2
    candidates = [[PASSAGES[0], PASSAGES[1], PASSAGES[2]], [PASSAGES[0], PASSAGES[1], PASSAGES[3]],
                  [PASSAGES[0], PASSAGES[1], PASSAGES[3]]]
    check = teacher_check(tiny_reader, GOLD_EXAMPLES + [EXAMPLES[0]], candidates + [candidates[0]],
                          TeacherConfig(teacher="attn-norm"), batch_size=2)
    scores = Teacher(tiny_reader, TeacherConfig(teacher="attn-norm")).score(
        [e.question for e in GOLD_EXAMPLES], candidates, [e.answers[0] for e in GOLD_EXAMPLES])
    top = scores.argmax(-1).tolist()
    expected_hits = (top[0] == 0) + (top[1] == 1)  # q2's gold (p2) is not among its candidates
    assert check["questions"] == 3  # the example without gold ids is left out
    assert check["teacher_top1_gold"] == pytest.approx(expected_hits / 3)
    assert check["retriever_top1_gold"] == pytest.approx(1 / 3)  # only q0 has the gold passage at rank 0
    assert check["candidates_contain_gold"] == pytest.approx(2 / 3)
    assert check["teacher"] == "attn-norm" and check["aggregation"] == "sum"
    no_answers = [QAExample(e.id, e.question, [""]) for e in EXAMPLES]
    assert teacher_check(tiny_reader, no_answers, candidates, None) is None  # neither gold ids nor answers
    # the label-free part on the same scores: q0 "Paris" is in p0 only (q0 is asked twice, the second time
    # without gold ids), q1 "Spree" in p1 only; q2 "seven" is in p2, which q2's candidates lack (not informative)
    answers = check["answer_check"]
    assert answers["informative"] == 3 and answers["questions_with_answers"] == 4
    assert answers["first_stage_top1_answer"] == pytest.approx(2 / 3)  # p0 holds "Paris"; p0 lacks "Spree"
    assert answers["teacher_top1_answer"] == pytest.approx((2 * (top[0] == 0) + (top[1] == 1)) / 3)


@needs_tokenizers
def test_diagnose_reports_the_teacher_check_with_gold_ids(tmp_path, tiny_reader, tiny_retriever, tiny_index):
    result = diagnose(tiny_reader, GOLD_EXAMPLES, n=3, index=tiny_index, retriever=tiny_retriever, n_passages=3,
                      progress=False)
    check = result["teacher_check"]
    # the same check computed directly on the candidates the retriever returns for these questions
    from attnrag.retrieval.index import retrieve

    _, candidates = retrieve(tiny_index, tiny_index.passages, tiny_retriever, [e.question for e in GOLD_EXAMPLES], 3)
    direct = teacher_check(tiny_reader, GOLD_EXAMPLES, candidates, None)
    assert check["questions"] == 3
    assert check["teacher_top1_rank_share"] == pytest.approx(direct.pop("teacher_top1_rank_share"))
    for nested in ("paired", "answer_check"):
        assert json.dumps(check[nested], sort_keys=True) == json.dumps(direct.pop(nested), sort_keys=True)
    assert {k: check[k] for k in direct} == pytest.approx(direct)
    expected = combined_verdict(*verdict(result["indicators"]), check)
    assert (result["verdict"], result["message"]) == expected
    assert "teacher top-1 gold" in result["message"]


@needs_tokenizers
def test_diagnose_downgrades_when_the_teacher_is_below_the_retriever(monkeypatch, tiny_reader, tiny_retriever,
                                                                     tiny_index):
    """End to end through diagnose(): the indicators say effective, the teacher check says otherwise."""
    import attnrag.analysis.diagnose as diag

    monkeypatch.setattr(diag, "verdict", lambda agg, thresholds=None: ("effective", "effective: share 0.9, rho 0.2"))
    monkeypatch.setattr(diag, "teacher_check", lambda *a, **k: {"teacher_top1_gold": 0.1, "retriever_top1_gold": 0.9,
                                                                "questions": 3})
    result = diagnose(tiny_reader, GOLD_EXAMPLES, n=3, index=tiny_index, retriever=tiny_retriever, n_passages=3,
                      progress=False)
    assert result["verdict"] == "ineffective" and "0.10 vs retriever 0.90" in result["message"]


@pytest.mark.skipif(not any(__import__("shutil").which(b) for b in ("chromium", "chromium-browser", "google-chrome")),
                    reason="headless Chromium is not installed (Debian package 'chromium')")
def test_html_page_renders_in_chromium_with_shading_and_no_script(tmp_path):
    """A browser, not string checks. Three pages that differ only in attention: all-zero, one passage
    focused on one token, one passage flat. The focused token adds dark-red pixels over the all-zero
    page, the flat passage adds none, and a passage that tries to repaint the page through a <script>
    does not run."""
    from matplotlib.image import imread

    from attnrag.analysis.report import screenshot, write_html

    attack = "<script>document.body.style.background='rgb(0,0,255)'</script>"
    words = [f" w{i}" for i in range(30)]

    def render(name: str, focus: float, flat: float) -> np.ndarray:
        focused = [("The", 0.0, False, False), (" capital", 0.0, False, True), (" is", 0.0, False, False),
                   (" Paris" * 6, focus, True, False)]
        spread = [(w, flat, False, False) for w in words] + [(attack, flat, False, False)]
        section = render_section("run", "What is the capital?", "Paris",
                                 [{"title": "Focused", "tokens": focused}, {"title": "Flat", "tokens": spread}])
        page = write_html(tmp_path / f"{name}.html", [section])
        image = imread(screenshot(page, tmp_path / f"{name}.png", width=900, height=700))[..., :3]
        assert image.shape[:2] == (700, 900)
        assert not ((image[..., 2] > 0.9) & (image[..., 0] < 0.1) & (image[..., 1] < 0.1)).any(), "a script ran"
        return image

    def dark_red(image: np.ndarray) -> int:  # rgba(230, 60, 30, alpha >= ~0.9) on white
        return int(((image[..., 0] > 0.85) & (image[..., 1] < 0.4) & (image[..., 2] < 0.3)).sum())

    zero = dark_red(render("zero", 0.0, 0.0))
    focused = dark_red(render("focused", 1.0, 0.0))
    flat = dark_red(render("flat", 0.0, 0.001))
    assert focused - zero > 500, "the fully attended token is not shaded"
    assert flat == zero, "a near-uniform passage is drawn as if it were focused"


def test_the_teacher_check_names_a_position_bias_and_its_remedy():
    """Gemma 3's teacher preferred the last candidate (docs/results/gemma3): the message says so and points
    at shuffle_orders; the label is what the accuracies alone give."""
    import torch

    from attnrag.analysis.diagnose import position_bias
    from attnrag.data.records import QAExample
    from attnrag.evaluate.teacher import teacher_accuracy

    # 10 questions, 5 candidates; the teacher's top-1 is the last candidate for 6 of them
    scores = torch.zeros(10, 5)
    for i in range(10):
        scores[i, 4 if i < 6 else i % 4] = 1.0
    ids = [[f"q{i}-c{k}" for k in range(5)] for i in range(10)]
    examples = [QAExample(f"q{i}", "question", ["a"], [f"q{i}-c0"]) for i in range(10)]
    check = teacher_accuracy(scores, ids, examples)
    assert check["teacher_top1_rank_share"] == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.6])
    assert position_bias(check) == (4, pytest.approx(0.6), pytest.approx(0.2))
    label, message = verdict({"answer_attn_share_ge_0.057": 0.9, "answer_rho_mean": 0.2})
    plain = combined_verdict(label, message, {k: v for k, v in check.items() if k != "teacher_top1_rank_share"})
    biased = combined_verdict(label, message, check)
    assert biased[0] == plain[0] and biased[1].startswith(plain[1])
    assert "rank 5 for 60% of the questions (chance 20%)" in biased[1] and "shuffle" in biased[1]
    even = {**check, "teacher_top1_rank_share": [0.4, 0.2, 0.2, 0.1, 0.1]}  # rank 1 is where the gold usually is
    assert position_bias(even) is None
