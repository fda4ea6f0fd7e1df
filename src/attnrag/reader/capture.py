"""Capture the attention that answer tokens pay to every input token, at the cost of a plain forward.

Why not ``output_attentions=True``? It forces eager attention and materialises every layer's full
``L x L`` map for every head (memory ``layers x heads x L^2``), while the teacher needs only the
rows of the few answer tokens. Instead attnrag registers attention functions with transformers'
``AttentionInterface``. They compute the layer output exactly as the model's own implementation
would and, only when the caller passes an :class:`AttentionCapture` through the forward's keyword
arguments, also recompute the ``A x L`` softmax rows of the answer queries, weight them by the value
norms of each head, average over heads and add the result to a per-token ``[batch, L]`` buffer.
Peak extra memory per layer is ``heads x A x L``.

The rows are computed from exactly what the layer computes with: the post-RoPE queries and keys and
the un-repeated key/value heads the function receives, the layer's ``scaling``, its logit
soft-capping (``softcap``, Gemma 2) and **the mask the model hands to the attention function**
(boolean or additive; causal, padding, sliding-window, chunked and bidirectional-prefix patterns
all arrive in it, and additive biases such as T5's ``position_bias`` are added as the layer adds
them). A model that passes a keyword known to change attention in another way (attention sinks,
:data:`UNSUPPORTED_KWARGS`) raises instead of being captured approximately.

Three paths, chosen per architecture by :func:`enable_capture` (``docs/method.md`` has the table):

* ``attnrag_sdpa``: the layer output comes from PyTorch's SDPA kernel, exactly as
  ``attn_implementation="sdpa"``. Every model that routes attention through the interface and that
  SDPA can compute (Llama, Mistral, Qwen, Gemma 3, Phi-3, OLMo-2, GPT-2, GPT-NeoX, T5, ...).
* ``attnrag_eager``: the layer output comes from the model's own ``eager_attention_forward``, for
  models SDPA cannot compute exactly (attention-logit soft-capping: Gemma 2). Every forward of such
  a model, training and generation included, runs eager, not only the teacher's.
* module hooks: Falcon does not route its attention through the interface before transformers 5.25,
  so there forward hooks on its attention modules read the fused QKV projection and the mask (ALiBi
  folded in) the module receives, and the same row computation runs on them; the layer itself keeps
  running SDPA. From 5.25 on Falcon reaches the interface (ALiBi folded into the mask) and takes the
  SDPA path; which one a model gets is decided by a probe forward, not by a version string.

Definitions (see ``docs/method.md``): for answer query ``o``, layer ``l``, head ``h`` and key ``t``::

    prob   : a[l,h,o,t]                            (plain attention probability)
    norm   : a[l,h,o,t] * ||v[l,kv(h),t]||           (value-norm weighting, default; Kobayashi et al.)
    logits : s[l,h,o,t], the pre-softmax score: q . k * scale, soft-capped where the layer caps, plus
             any finite additive bias of the mask (ALiBi, T5 position bias); masked keys count as 0

``token_scores[b, t] = sum_l mean_h sum_o w[b,o] * x[l,h,o,t] / num_layers`` where ``w`` are the
query weights (``1/A`` over the answer tokens, or 1 on the first answer token only).
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial

import torch

from ..errors import InputError

CAPTURE_IMPLEMENTATION = "attnrag_sdpa"
EAGER_IMPLEMENTATION = "attnrag_eager"
HOOKS_PATH = "module_hooks"
SIGNALS = ("prob", "norm", "logits")

# Keywords some models pass to their attention function that change the attention beyond the mask,
# scaling, soft-capping and position bias handled here (attention sinks in GPT-OSS, block-sparse or
# indexed attention): the captured rows would differ from the layer's, so such a model is refused.
UNSUPPORTED_KWARGS = frozenset({"s_aux", "sinks", "block_indices", "indices"})


@dataclass
class AttentionCapture:
    """Accumulator passed as ``attnrag_capture=`` to a model forward.

    Attributes:
        query_positions: ``[B, A]`` long, the positions whose attention rows are captured; ``-1`` pads.
        query_weights: ``[B, A]`` float, the weight of each captured row (0 on padding).
        key_mask: ``[B, L]`` bool, keys that exist (False on padding). Not used for masking: the
            mask the model passes to each layer decides which keys a row sees.
        signal: one of ``prob``, ``norm``, ``logits``.
        num_layers: the number of attention layers (scores are averaged over layers, as in ATLAS).
        cross_attention: capture only cross-attention layers (encoder-decoder readers); the
            queries are then decoder positions and the keys encoder positions.
    """

    query_positions: torch.Tensor
    query_weights: torch.Tensor
    key_mask: torch.Tensor
    signal: str = "norm"
    num_layers: int = 1
    cross_attention: bool = False
    token_scores: torch.Tensor | None = None
    layers_seen: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ValueError(f"signal must be one of {SIGNALS}, got {self.signal!r}")

    @torch.no_grad()
    def observe(self, module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                scaling: float | None, is_cross: bool, attention_mask: torch.Tensor | None = None, *,
                softcap: float | None = None, position_bias: torch.Tensor | None = None,
                is_causal: bool = True, query_rows: torch.Tensor | None = None) -> None:
        """Add one layer's answer-row attention, reduced over heads and answer tokens, to ``token_scores``.

        ``attention_mask``, ``softcap``, ``position_bias`` and ``is_causal`` are what the layer's
        attention function received; ``None`` mask means what SDPA does then (causal when
        ``is_causal`` and more than one query, else every key). ``query_rows`` ``[B, H, A, D]``: the
        answer rows of the queries, already gathered (then ``query`` may be ``None``).
        """
        if is_cross != self.cross_attention:
            return
        batch, n_heads, _, head_dim = (query if query_rows is None else query_rows).shape
        n_queries = key.shape[2] if query is None else query.shape[2]
        n_kv, n_keys = key.shape[1], key.shape[2]
        groups = n_heads // n_kv
        n_rows = self.query_positions.shape[1]
        scale = scaling if scaling is not None else head_dim**-0.5
        # Always fp32, also inside the reader's bf16 autocast (matmul/einsum would otherwise run in bf16).
        with torch.autocast(key.device.type, enabled=False):
            c = self._constants(batch, n_heads, head_dim, key.device)
            bias, masked = self._row_bias(attention_mask, position_bias, is_causal and n_queries > 1,
                                          batch, n_heads, n_kv, n_keys, key.device)
            # Group query heads by their key/value head: head h uses kv head h // groups (repeat_kv order).
            rows = (query.gather(2, c["index"]) if query_rows is None else query_rows).float() * scale
            rows = rows.reshape(batch, n_kv, groups * n_rows, head_dim)
            logits = torch.matmul(rows, key.float().transpose(-1, -2))  # [B, KV, G*A, L]
            logits = logits.view(batch, n_kv, groups, n_rows, n_keys)
            if softcap is not None:
                logits = torch.tanh(logits.div_(softcap)).mul_(softcap)
            logits = logits.add_(bias)
            if self.signal == "logits":
                x = logits.masked_fill_(masked, 0.0)
            else:
                x = torch.softmax(logits, dim=-1)
                if self.signal == "norm":
                    x = x.mul_(torch.linalg.vector_norm(value.float(), dim=-1)[:, :, None, None, :n_keys])
            # mean over heads, weighted sum over answer rows and 1/num_layers in one contraction
            layer_scores = torch.einsum("bkgal,ba->bl", x, c["weights"])
        if self.token_scores is None:
            self.token_scores = layer_scores
        else:
            self.token_scores.add_(layer_scores)
        self.layers_seen += 1

    def _constants(self, batch: int, n_heads: int, head_dim: int, device) -> dict:
        """Tensors that are the same in every layer of one forward, built at the first layer."""
        shape = (batch, n_heads, head_dim)
        if self._cache.get("shape") != shape:
            n_rows = self.query_positions.shape[1]
            positions = self.query_positions.clamp(min=0)
            self._cache = {
                "shape": shape,
                "positions": positions,
                "index": positions[:, None, :, None].expand(batch, n_heads, n_rows, head_dim),
                "weights": self.query_weights.float() / (n_heads * self.num_layers),
                "biases": {},
            }
        return self._cache

    def _row_bias(self, mask: torch.Tensor | None, position_bias: torch.Tensor | None, causal: bool,
                  batch: int, n_heads: int, n_kv: int, n_keys: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """The additive fp32 bias ``[B, KV|1, G|1, A, L]`` of the answer rows, and where keys are masked.

        Built from the layer's own mask (and position bias), once per distinct mask tensor: layers
        that share a mask (all full-attention layers, all sliding layers) share the result. The
        cache keeps a reference to the mask so its id cannot be reused within the forward.
        """
        key = (id(mask), id(position_bias), causal, n_keys)
        cached = self._cache["biases"].get(key)
        if cached is not None:
            return cached[2], cached[3]
        positions = self._cache["positions"]
        lowest = torch.finfo(torch.float32).min
        if mask is None:
            allowed = torch.ones((batch, 1, positions.shape[1], n_keys), dtype=torch.bool, device=device)
            if causal:  # what SDPA's is_causal computes (upper-left aligned)
                allowed &= torch.arange(n_keys, device=device) <= positions[:, None, :, None]
            bias = torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, lowest)
            masked = ~allowed
        else:
            rows = _gather_rows(mask[..., :n_keys], positions, batch)
            if rows.dtype == torch.bool:
                masked = ~rows
                bias = torch.zeros(rows.shape, device=device).masked_fill_(masked, lowest)
            else:
                masked = rows <= torch.finfo(rows.dtype).min / 2
                # A finite "-inf": a row with no allowed key (answer padding, weight 0) stays finite.
                bias = rows.float().clamp(min=lowest)
        if position_bias is not None:
            bias = bias + _gather_rows(position_bias[..., :n_keys], positions, batch).float()
            bias = bias.clamp(min=lowest)
            masked = masked | (bias <= lowest / 2)
        bias, masked = _by_kv_head(bias, n_heads, n_kv), _by_kv_head(masked, n_heads, n_kv)
        self._cache["biases"][key] = (mask, position_bias, bias, masked)
        return bias, masked


def _gather_rows(mask: torch.Tensor, positions: torch.Tensor, batch: int) -> torch.Tensor:
    """``mask[b, h, positions[b, a], :]`` as ``[B, h, A, L]``; broadcast batch or query dims are expanded."""
    mask = mask.expand(batch, mask.shape[1], mask.shape[2], mask.shape[3])
    if mask.shape[2] == 1:
        return mask.expand(batch, mask.shape[1], positions.shape[1], mask.shape[3])
    rows = mask[torch.arange(batch, device=mask.device)[:, None], :, positions.to(mask.device)]  # [B, A, h, L]
    return rows.transpose(1, 2)


def _by_kv_head(x: torch.Tensor, n_heads: int, n_kv: int) -> torch.Tensor:
    """Reshape ``[B, H|1, A, L]`` to ``[B, KV|1, G|1, A, L]`` (head h = kv * G + g, repeat_kv order)."""
    if x.shape[1] == 1:
        return x[:, :, None]
    if x.shape[1] != n_heads:
        raise ValueError(f"the attention mask has {x.shape[1]} heads, the layer {n_heads}")
    return x.reshape(x.shape[0], n_kv, n_heads // n_kv, *x.shape[2:])


# ---------------------------------------------------------------------------------------- interface path
def _is_causal(module: torch.nn.Module, kwargs: dict) -> bool:
    """The causality SDPA would use: the ``is_causal`` keyword if given, else the module's flag."""
    value = kwargs.get("is_causal")
    return bool(value if value is not None else getattr(module, "is_causal", True))


def _additive_mask(mask: torch.Tensor | None, query: torch.Tensor, key: torch.Tensor,
                   causal: bool) -> torch.Tensor | None:
    """The float mask eager attention adds, from whatever the model passed (bool, float or None)."""
    lowest = torch.finfo(query.dtype).min
    if mask is None:
        if not causal or query.shape[2] == 1:
            return None
        q_len, k_len = query.shape[2], key.shape[2]
        mask = torch.arange(q_len, device=query.device)[:, None] >= torch.arange(k_len, device=query.device)
        mask = mask[None, None]
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill_(~mask, lowest)
    return mask


def _model_eager(module: torch.nn.Module) -> Callable:
    """The ``eager_attention_forward`` of the module's own modeling file (what ``"eager"`` would run)."""
    eager = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if eager is None:
        raise InputError(f"{type(module).__name__} needs eager attention (soft-capping) but its modeling file "
                         "has no eager_attention_forward; attnrag cannot compute it exactly", field="reader")
    return eager


def _capture_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                               *, _eager: bool = False, **kwargs):
    """The layer's attention (SDPA, or the model's eager where SDPA is not exact), plus answer-row capture."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    capture: AttentionCapture | None = kwargs.pop("attnrag_capture", None)
    if capture is None:  # a model that does not thread keyword arguments to its attention (Falcon in 5.25)
        capture = _ACTIVE_CAPTURE.get()
    unsupported = sorted(k for k in UNSUPPORTED_KWARGS if kwargs.get(k) is not None)
    if unsupported:
        raise InputError(f"{type(module).__name__} passes {unsupported} to its attention function (attention "
                         "beyond mask, scaling and soft-capping); attnrag cannot capture it exactly", field="reader")
    causal = _is_causal(module, kwargs)
    if _eager or kwargs.get("softcap") is not None:
        output, _ = _model_eager(module)(module, query, key, value, _additive_mask(attention_mask, query, key, causal),
                                         dropout=dropout, scaling=scaling, **kwargs)
    else:
        output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                           scaling=scaling, **kwargs)
    if capture is not None:
        is_cross = bool(getattr(module, "is_cross_attention", False)) or (
            query.shape[2] != key.shape[2] and not getattr(module, "is_causal", True)
        )
        capture.observe(module, query, key, value, scaling, is_cross, attention_mask,
                        softcap=kwargs.get("softcap"), position_bias=kwargs.get("position_bias"), is_causal=causal)
    return output, None


_REGISTERED = False

# The capture of the forward running in this thread, for layers that call the attention function
# without passing the forward's keyword arguments on (set by :func:`capturing`).
_ACTIVE_CAPTURE: ContextVar[AttentionCapture | None] = ContextVar("attnrag_active_capture", default=None)


def register_capture_attention() -> str:
    """Register ``attnrag_sdpa`` and ``attnrag_eager`` with transformers (idempotent); return the SDPA name."""
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask, sdpa_mask

        AttentionInterface.register(CAPTURE_IMPLEMENTATION, _capture_attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(CAPTURE_IMPLEMENTATION, sdpa_mask)
        # No "sdpa" in this name: transformers refuses names containing it for models without SDPA.
        AttentionInterface.register(EAGER_IMPLEMENTATION, partial(_capture_attention_forward, _eager=True))
        ALL_MASK_ATTENTION_FUNCTIONS.register(EAGER_IMPLEMENTATION, eager_mask)
        _REGISTERED = True
    return CAPTURE_IMPLEMENTATION


# ---------------------------------------------------------------------------------------- module-hook path
def split_falcon_qkv(fused: torch.Tensor, config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split Falcon's fused QKV projection ``[B, L, out]`` into ``[B, L, H, D]`` queries and ``[B, L, KV, D]``
    keys and values.

    The layout is a property of the checkpoint format (documented with the Falcon checkpoints, and the
    same in every transformers release), so attnrag reads it from the public config instead of calling a
    private helper of ``FalconAttention``:

    * ``new_decoder_architecture`` (Falcon-40B/180B, GQA): ``[KV, H/KV + 2, D]``, each group's queries,
      then its key, then its value;
    * ``multi_query`` (Falcon-7B/1B): ``[H + 2, D]``, every query head, then one key and one value;
    * otherwise (multi-head): ``[H, 3, D]``, query, key and value interleaved per head.
    """
    batch, length, _ = fused.shape
    heads = config.num_attention_heads
    dim = config.hidden_size // heads
    if config.new_decoder_architecture:
        kv = config.num_kv_heads
        grouped = fused.view(batch, length, kv, heads // kv + 2, dim)
        return grouped[..., :-2, :].flatten(2, 3), grouped[..., -2, :], grouped[..., -1, :]
    if config.multi_query:
        q, k, v = fused.view(batch, length, heads + 2, dim).split([heads, 1, 1], dim=2)
        return q, k, v
    q, k, v = fused.view(batch, length, heads, 3, dim).unbind(3)
    return q, k, v


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    """The rotary embedding's half rotation (the formula every rotary model in transformers applies)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _falcon_observe(module, args, kwargs, output, *, capture: AttentionCapture, store: dict) -> None:
    """Rebuild Falcon's post-RoPE q/k/v from its fused projection, exactly as ``FalconAttention.forward``.

    Rotary embeddings are applied to the keys and to the answer rows of the queries only (the same
    formula as ``apply_rotary_pos_emb``, on fewer rows): rotating every query again would cost a
    fifth of the layer on a CPU.
    """
    inputs = inspect.signature(module.forward).bind(*args, **kwargs).arguments
    query, key, value = split_falcon_qkv(store.pop("qkv"), module.config)  # [B, L, heads, D] views
    batch, dim = query.shape[0], query.shape[-1]
    key, value = key.transpose(1, 2), value.transpose(1, 2)  # [B, KV, L, D], as the layer reshapes them
    positions = capture.query_positions.clamp(min=0)  # [B, A]
    rows = query[torch.arange(batch, device=query.device)[:, None], positions].transpose(1, 2)  # [B, H, A, D]
    if not module.config.alibi:
        cos, sin = inputs["position_embeddings"]  # [B, L, D]
        at = positions[..., None].expand(batch, positions.shape[1], dim)
        cos_rows, sin_rows = cos.gather(1, at)[:, None], sin.gather(1, at)[:, None]
        rows = rows * cos_rows + _rotate_half(rows) * sin_rows
        key = key * cos[:, None] + _rotate_half(key) * sin[:, None]
    # With ALiBi the model folds alibi / sqrt(head_dim) into the mask it passes, and SDPA's default
    # scale is 1 / sqrt(head_dim): the layer softmaxes q.k / sqrt(head_dim) + mask.
    capture.observe(module, None, key, value, dim**-0.5, False, inputs.get("attention_mask"), query_rows=rows)


def _falcon_attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Falcon's attention modules: the children called ``self_attention`` that own a fused ``query_key_value``."""
    return [m for name, m in model.named_modules()
            if name.endswith("self_attention") and isinstance(getattr(m, "query_key_value", None), torch.nn.Module)]


def _falcon_hooks(model: torch.nn.Module, capture: AttentionCapture) -> list:
    handles = []
    for module in _falcon_attention_modules(model):
        store: dict = {}
        handles.append(module.query_key_value.register_forward_hook(
            lambda mod, inp, out, store=store: store.__setitem__("qkv", out)))
        handles.append(module.register_forward_hook(
            partial(_falcon_observe, capture=capture, store=store), with_kwargs=True))
    return handles


def _falcon_prepare(model: torch.nn.Module) -> None:
    """Falcon must run SDPA on the hook path: in transformers 5.24 its eager ALiBi path adds ALiBi
    twice (once folded into the mask, once in the layer), so eager would be the wrong model.

    Releases whose Falcon bypasses the attention interface also refuse ``set_attn_implementation``
    (a warning, no change), so the config's implementation field is set directly: the one private
    attribute attnrag writes, on this path only, guarded by ``tests/test_library_internals.py``.
    """
    import transformers

    config = model.config
    if not hasattr(config, "_attn_implementation"):
        raise InputError(f"transformers {transformers.__version__}: Falcon's layers bypass the attention interface "
                         "and its config has no attention-implementation field; attnrag cannot make it run SDPA "
                         "for an exact capture on this release", field="reader")
    config._attn_implementation = "sdpa"


# model_type -> (prepare the model, attach hooks for one capture), for releases of transformers in which
# the architecture's attention does not reach the attention interface (Falcon before 5.25)
MODULE_CAPTURES: dict[str, tuple[Callable, Callable]] = {"falcon": (_falcon_prepare, _falcon_hooks)}


# model -> the path enable_capture chose for it (weak: a model's lifetime is its owner's business)
_CAPTURE_PATHS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@torch.no_grad()
def layers_reaching_interface(model: torch.nn.Module) -> int:
    """How many attention layers of ``model`` call the registered attention function (a 4-token probe).

    The capture path is chosen by what the layers do, not by a transformers version: a release that
    moves an architecture onto the attention interface (Falcon in 5.25) gets the interface path, an
    older one the module hooks.
    """
    device = next(model.parameters()).device
    ids = torch.tensor([[3, 4, 5, 6]], device=device)
    mask = torch.ones_like(ids)
    probe = make_capture([(3, 4)], 4, mask.bool(), signal="prob", num_layers=1, device=device)
    was_training = model.training
    model.eval()
    token = _ACTIVE_CAPTURE.set(probe)
    try:
        with torch.autocast(device.type, enabled=False):
            model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        _ACTIVE_CAPTURE.reset(token)
        model.train(was_training)
    return probe.layers_seen


def capture_path(model: torch.nn.Module) -> str:
    """How :func:`enable_capture` captured this model: an implementation name or :data:`HOOKS_PATH`."""
    return _CAPTURE_PATHS.get(model, "none")


def enable_capture(model: torch.nn.Module) -> str:
    """Switch a loaded transformers model to an exact capturing path and return the path's name.

    SDPA where it computes the model exactly, the model's eager attention where it cannot (logit
    soft-capping, or a model transformers marks as not supporting SDPA); for an architecture with a
    module capture (Falcon), the interface path when its layers reach the attention function on the
    installed transformers, module hooks otherwise. Whether a model's layers then really reach the
    capture is checked by the readers (a probe forward in :class:`~attnrag.reader.decoder.DecoderReader`,
    the layer count in the FiD reader): ``_supports_attention_backend`` is no guide (T5 routes through
    the interface without it).
    """
    register_capture_attention()
    config = model.config
    model_type = getattr(config, "model_type", None)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    name = EAGER_IMPLEMENTATION if getattr(text_config, "attn_logit_softcapping", None) else CAPTURE_IMPLEMENTATION
    try:
        model.set_attn_implementation(name)
    except ValueError:  # the model does not support SDPA at all: its eager attention is the exact one
        name = EAGER_IMPLEMENTATION
        model.set_attn_implementation(name)
    if model_type in MODULE_CAPTURES and layers_reaching_interface(model) == 0:
        MODULE_CAPTURES[model_type][0](model)
        name = HOOKS_PATH
    _CAPTURE_PATHS[model] = name
    return name

@contextmanager
def capturing(model: torch.nn.Module, capture: AttentionCapture | None) -> Iterator[dict]:
    """The keyword arguments that make one forward of ``model`` feed ``capture`` (hooks attached meanwhile)."""
    if capture is None:
        yield {}
        return
    entry = MODULE_CAPTURES.get(getattr(model.config, "model_type", None))
    if entry is None or capture_path(model) != HOOKS_PATH:
        token = _ACTIVE_CAPTURE.set(capture)
        try:
            yield {"attnrag_capture": capture}
        finally:
            _ACTIVE_CAPTURE.reset(token)
        return
    handles = entry[1](model, capture)
    try:
        yield {}
    finally:
        for handle in handles:
            handle.remove()


def make_capture(answer_spans: list[tuple[int, int] | None], seq_len: int, key_mask: torch.Tensor, *,
                 signal: str = "norm", first_token_only: bool = False, num_layers: int,
                 device: torch.device | str = "cpu", cross_attention: bool = False,
                 shift: int = 1) -> AttentionCapture:
    """Build a capture for the positions that *predict* each answer token.

    In a causal LM the token at position ``p`` is produced by the query at ``p - 1`` (``shift=1``):
    the attention that decides answer token ``o`` is the row of the position just before it. For an
    encoder-decoder the decoder input is already shifted right, so ``shift=0`` there.
    """
    lengths = [0 if s is None else s[1] - s[0] for s in answer_spans]
    n_rows = max(1, 1 if first_token_only else max(lengths, default=1))
    positions = torch.full((len(answer_spans), n_rows), -1, dtype=torch.long)
    weights = torch.zeros((len(answer_spans), n_rows), dtype=torch.float32)
    for b, span in enumerate(answer_spans):
        if span is None or span[1] <= span[0]:
            continue
        count = 1 if first_token_only else span[1] - span[0]
        start = span[0] - shift
        positions[b, :count] = torch.arange(start, start + count)
        weights[b, :count] = 1.0 / count
    if (positions >= seq_len).any():
        raise ValueError("answer position outside the sequence")
    return AttentionCapture(positions.to(device), weights.to(device), key_mask.to(device), signal=signal,
                            num_layers=num_layers, cross_attention=cross_attention)
