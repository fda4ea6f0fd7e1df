"""The few places attnrag leans on another library beyond its stable public API, each checked here so
that a release which moves one fails this file loudly, naming the release, instead of failing a
user's run midway. ``make test-latest`` runs this file against the newest releases the ranges allow.

What attnrag uses, and why no public path exists:

* ``transformers.integrations.sdpa_attention.sdpa_attention_forward`` and
  ``transformers.masking_utils`` (``ALL_MASK_ATTENTION_FUNCTIONS``, ``sdpa_mask``, ``eager_mask``):
  the documented way to register a custom attention function (transformers' attention-interface
  guide) that computes exactly what ``"sdpa"`` computes.
* each modeling file's ``eager_attention_forward``, for models SDPA cannot compute exactly
  (Gemma 2's logit soft-capping).
* ``PreTrainedConfig._attn_implementation``, written only for Falcon on releases whose Falcon
  bypasses the attention interface (before 5.25), where ``set_attn_implementation`` is refused.
* ``DistributedDataParallel._set_params_and_buffers_to_ignore_for_model``: torch's documented way
  to keep frozen-but-``requires_grad`` parameters out of DDP's buckets.
* bm25s: ``BM25.vocab_dict`` (the indexed vocabulary, to drop query tokens BM25 has never seen:
  ``get_scores`` refuses them) and the keys of a saved index's ``params.index.json`` (read to refuse
  a damaged or foreign index before loading it).
"""

from __future__ import annotations

import importlib

import pytest
import torch
import transformers

from attnrag.reader.decoder import cpu_has_native_bf16

VERSIONS = f"transformers {transformers.__version__}, torch {torch.__version__}"


def test_attention_interface_pieces_exist():
    sdpa = importlib.import_module("transformers.integrations.sdpa_attention")
    masking = importlib.import_module("transformers.masking_utils")
    assert callable(getattr(sdpa, "sdpa_attention_forward", None)), f"{VERSIONS}: sdpa_attention_forward moved"
    for name in ("ALL_MASK_ATTENTION_FUNCTIONS", "sdpa_mask", "eager_mask"):
        assert hasattr(masking, name), f"{VERSIONS}: transformers.masking_utils.{name} moved"
    assert hasattr(transformers, "AttentionInterface"), f"{VERSIONS}: AttentionInterface is gone"


def test_gemma2_modeling_file_has_eager_attention():
    module = importlib.import_module("transformers.models.gemma2.modeling_gemma2")
    assert callable(getattr(module, "eager_attention_forward", None)), (
        f"{VERSIONS}: Gemma 2's eager_attention_forward moved; soft-capped models cannot be captured exactly")


def test_falcon_hook_path_prerequisites():
    """Where Falcon bypasses the interface, attnrag needs the config's implementation field."""
    from attnrag.reader.capture import layers_reaching_interface, register_capture_attention

    register_capture_attention()
    config = transformers.FalconConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=64,
                                       alibi=False, multi_query=True)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    try:
        model.set_attn_implementation("attnrag_sdpa")
    except ValueError:
        pass
    if layers_reaching_interface(model) == 0:
        assert hasattr(model.config, "_attn_implementation"), (
            f"{VERSIONS}: Falcon bypasses the attention interface and its config lost _attn_implementation")


def test_ddp_ignore_helper_exists():
    from torch.nn.parallel import DistributedDataParallel

    assert callable(getattr(DistributedDataParallel, "_set_params_and_buffers_to_ignore_for_model", None)), (
        f"{VERSIONS}: DDP._set_params_and_buffers_to_ignore_for_model is gone (attnrag.parallel needs it)")


# ------------------------------------------------------------------------- native bf16 without torch privates
def test_native_bf16_read_from_cpu_flags(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n\nprocessor\t: 1\n")
    avx512 = tmp_path / "avx512"
    avx512.write_text("flags\t\t: fpu avx2 avx512f avx512_bf16\n")
    plain = tmp_path / "plain"
    plain.write_text("flags\t\t: fpu sse2 avx2 avx512f\n")
    assert cpu_has_native_bf16(amx) and cpu_has_native_bf16(avx512)
    assert not cpu_has_native_bf16(plain)
    assert not cpu_has_native_bf16(tmp_path / "missing")  # macOS / Windows: fp32, the safe choice


def test_native_bf16_agrees_with_torch_where_torch_can_tell():
    """On Linux, the flags agree with torch's own (private) detection when this torch still has it."""
    cpu = getattr(torch, "cpu", None)
    torch_amx = getattr(cpu, "_is_amx_tile_supported", None)
    torch_avx512 = getattr(cpu, "_is_avx512_bf16_supported", None)
    try:
        open("/proc/cpuinfo").close()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if torch_amx is None or torch_avx512 is None:
        pytest.skip(f"torch {torch.__version__} no longer exposes its bf16 detection: nothing to compare")
    assert cpu_has_native_bf16() == bool(torch_amx() or torch_avx512())


def test_bm25s_vocabulary_and_saved_parameters(tmp_path):
    """attnrag.retrieval.lexical reads ``vocab_dict`` after ``index`` and validates the keys of
    ``params.index.json``: a bm25s release that renames either fails here."""
    import json

    import bm25s

    retriever = bm25s.BM25()
    retriever.index([["apple", "pie"], ["banana", "split"]], show_progress=False)
    assert isinstance(retriever.vocab_dict, dict) and {"apple", "banana"} <= set(retriever.vocab_dict)
    scores = retriever.get_scores(["apple"])
    assert len(scores) == 2 and scores[0] > scores[1] == 0
    retriever.save(str(tmp_path / "bm25"), allow_pickle=False)
    params = json.loads((tmp_path / "bm25" / "params.index.json").read_text())
    known = {"k1", "b", "delta", "method", "idf_method", "dtype", "int_dtype", "num_docs", "version", "backend"}
    assert set(params) <= known, f"bm25s {bm25s.__version__} writes new parameters: {sorted(set(params) - known)}"
    assert params["num_docs"] == 2
