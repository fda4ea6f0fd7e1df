"""Capture the attention that answer tokens pay to every input token, at the cost of a plain forward.

Why not ``output_attentions=True``? It forces eager attention and materialises every layer's full
``L x L`` map for every head (memory ``layers x heads x L^2``), while the teacher needs only the
rows of the few answer tokens. Instead attnrag registers one attention function with transformers'
``AttentionInterface`` (``"attnrag_sdpa"``). It always computes the layer output with PyTorch's
SDPA kernel, exactly as ``attn_implementation="sdpa"`` does, and, only when the caller passes an
:class:`AttentionCapture` through the forward's keyword arguments, it also recomputes the
``A x L`` softmax rows of the answer queries (with the causal and padding masks and grouped-query
heads), weights them by the value norms of each head, averages over heads and adds the result to
a per-token ``[batch, L]`` buffer. Peak extra memory per layer is ``heads x A x L``.

The attention-function interface was chosen over module hooks because the function receives the
post-RoPE queries and keys and the un-repeated key/value heads directly, so nothing has to be
recomputed or re-derived from module internals, and it works for every architecture that routes
its attention through the interface (Llama, Mistral, Qwen, Gemma, T5 in transformers >= 5, ...).

Definitions (see ``docs/method.md``): for answer query ``o``, layer ``l``, head ``h`` and key ``t``::

    prob   : a[l,h,o,t]                            (plain attention probability)
    norm   : a[l,h,o,t] * ||v[l,kv(h),t]||           (value-norm weighting, default; Kobayashi et al.)
    logits : q[l,h,o] . k[l,kv(h),t] * scale         (pre-softmax, masked keys count as 0)

``token_scores[b, t] = sum_l mean_h sum_o w[b,o] * x[l,h,o,t] / num_layers`` where ``w`` are the
query weights (``1/A`` over the answer tokens, or 1 on the first answer token only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

CAPTURE_IMPLEMENTATION = "attnrag_sdpa"
SIGNALS = ("prob", "norm", "logits")


@dataclass
class AttentionCapture:
    """Accumulator passed as ``attnrag_capture=`` to a model forward.

    Attributes:
        query_positions: ``[B, A]`` long, the positions whose attention rows are captured; ``-1`` pads.
        query_weights: ``[B, A]`` float, the weight of each captured row (0 on padding).
        key_mask: ``[B, L]`` bool, keys that exist (False on padding).
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
                scaling: float | None, is_cross: bool) -> None:
        """Add one layer's answer-row attention, reduced over heads and answer tokens, to ``token_scores``."""
        if is_cross != self.cross_attention:
            return
        batch, n_heads, _, head_dim = query.shape
        n_kv, n_keys = key.shape[1], key.shape[2]
        groups = n_heads // n_kv
        n_rows = self.query_positions.shape[1]
        scale = scaling if scaling is not None else head_dim**-0.5
        # Always fp32, also inside the reader's bf16 autocast (matmul/einsum would otherwise run in bf16).
        with torch.autocast(query.device.type, enabled=False):
            c = self._constants(batch, n_heads, head_dim, n_keys, query.device)
            # Group query heads by their key/value head: head h uses kv head h // groups (repeat_kv order).
            rows = query.gather(2, c["index"]).float().mul_(scale)
            rows = rows.view(batch, n_kv, groups * n_rows, head_dim)
            logits = torch.matmul(rows, key.float().transpose(-1, -2))  # [B, KV, G*A, L]
            logits = logits.view(batch, n_kv, groups, n_rows, n_keys)
            if self.signal == "logits":
                x = logits.masked_fill_(c["masked"], 0.0)
            else:
                x = torch.softmax(logits.add_(c["bias"]), dim=-1)
                if self.signal == "norm":
                    x = x.mul_(torch.linalg.vector_norm(value.float(), dim=-1)[:, :, None, None, :n_keys])
            # mean over heads, weighted sum over answer rows and 1/num_layers in one contraction
            layer_scores = torch.einsum("bkgal,ba->bl", x, c["weights"])
        if self.token_scores is None:
            self.token_scores = layer_scores
        else:
            self.token_scores.add_(layer_scores)
        self.layers_seen += 1

    def _constants(self, batch: int, n_heads: int, head_dim: int, n_keys: int, device) -> dict:
        """Tensors that are the same in every layer of one forward, built at the first layer."""
        shape = (batch, n_heads, head_dim, n_keys)
        if self._cache.get("shape") != shape:
            n_rows = self.query_positions.shape[1]
            positions = self.query_positions.clamp(min=0)
            allowed = self.key_mask[:, None, None, None, :n_keys].to(torch.bool)
            if not self.cross_attention:
                key_pos = torch.arange(n_keys, device=device)
                allowed = allowed & (key_pos <= positions[:, None, None, :, None])
            self._cache = {
                "shape": shape,
                "index": positions[:, None, :, None].expand(batch, n_heads, n_rows, head_dim),
                "masked": ~allowed,
                # A finite "-inf": a row with no allowed key (answer padding, weight 0) stays finite, so
                # no nan_to_num is needed; every real answer row allows at least its own position.
                "bias": torch.zeros(allowed.shape, device=device).masked_fill_(
                    ~allowed, torch.finfo(torch.float32).min),
                "weights": self.query_weights.float() / (n_heads * self.num_layers),
            }
        return self._cache


def _capture_attention_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """SDPA attention, plus answer-row capture when an :class:`AttentionCapture` is passed."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    capture: AttentionCapture | None = kwargs.pop("attnrag_capture", None)
    output, _ = sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                       scaling=scaling, **kwargs)
    if capture is not None:
        is_cross = bool(getattr(module, "is_cross_attention", False)) or (
            query.shape[2] != key.shape[2] and not getattr(module, "is_causal", True)
        )
        capture.observe(module, query, key, value, scaling, is_cross)
    return output, None


_REGISTERED = False


def register_capture_attention() -> str:
    """Register ``attnrag_sdpa`` with transformers (idempotent) and return its name."""
    global _REGISTERED
    if not _REGISTERED:
        from transformers import AttentionInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

        AttentionInterface.register(CAPTURE_IMPLEMENTATION, _capture_attention_forward)
        ALL_MASK_ATTENTION_FUNCTIONS.register(CAPTURE_IMPLEMENTATION, sdpa_mask)
        _REGISTERED = True
    return CAPTURE_IMPLEMENTATION


def enable_capture(model: torch.nn.Module) -> None:
    """Switch a loaded transformers model to the capturing SDPA implementation."""
    name = register_capture_attention()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:  # older transformers
        model.config._attn_implementation = name


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
