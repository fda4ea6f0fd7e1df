"""The attention each passage token receives from the answer tokens, as a per-question distribution.

The reader is run with teacher forcing on ``question + passages + gold answer`` and
:meth:`~attnrag.reader.decoder.DecoderReader.capture_token_attention` gives, for every input token,
the attention it receives from the rows that predict the answer tokens (layers averaged, heads
averaged, answer rows averaged).

Normalisation (a choice, see ``docs/analysis.md``): the captured scores are restricted to the
passage *content* tokens of the question and divided by their sum, so each question's attention is
a distribution over its passage tokens that sums to 1. Attention sinks (the first token, chat-role
tokens, index markers, newlines) and the question/answer tokens are left out, so a question's share
does not depend on how much mass the sinks absorb. With the 95th-percentile definition of
answer-related tokens, those tokens are 5% of the passage tokens: a reader that spreads attention
uniformly gives them a share of ~0.05, and the paper's first bin edge, 0.057, sits just above that,
so "share >= 0.057" reads as "attends to answer-related tokens more than a uniform reader would".

Only the ``prob`` and ``norm`` signals are allowed: ``logits`` can be negative, and a sum of
logits is no distribution.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.records import Passage
from ..errors import InputError

SIGNALS = ("prob", "norm")


@dataclass
class TokenAttention:
    """One question's passage tokens, the attention they receive and the tokens to relate them to.

    Attributes:
        question, answer: the texts read (``answer`` is the gold answer used for teacher forcing).
        passages: the passages in prompt order.
        token_ids: ``[T]`` the passage content tokens of all passages, in prompt order.
        passage_index: ``[T]`` which passage (0-based rank) each token belongs to.
        scores: ``[T]`` the captured attention, before normalisation.
        attention: ``[T]`` ``scores / scores.sum()`` (NaN everywhere when the sum is not positive).
        answer_ids: the answer tokens as the reader saw them (after the prompt).
        question_ids: the question tokens of the prompt's footer (empty when the prompt has none).
        states: hidden states ``{"passage": [T, d], "answer": [A, d], "question": [Q, d]}`` of the
            requested layer, or ``None`` when no layer was requested.
    """

    question: str
    answer: str
    passages: list[Passage]
    token_ids: np.ndarray
    passage_index: np.ndarray
    scores: np.ndarray
    attention: np.ndarray
    answer_ids: np.ndarray
    question_ids: np.ndarray
    states: dict[str, np.ndarray] | None = None


def normalize_attention(scores: np.ndarray) -> np.ndarray:
    """Divide by the sum so the scores form a distribution; all-NaN when the sum is not positive."""
    scores = np.asarray(scores, dtype=np.float64)
    total = scores.sum()
    if scores.size == 0 or not np.isfinite(total) or total <= 0:
        return np.full(scores.shape, np.nan)
    return scores / total


def check_signal(signal: str) -> str:
    if signal not in SIGNALS:
        raise InputError(f"signal must be one of {', '.join(SIGNALS)} for the token analysis, got '{signal}'",
                         field="signal")
    return signal


def _span(span: tuple[int, int] | None) -> slice:
    return slice(0, 0) if span is None else slice(span[0], span[1])


@torch.no_grad()
def _hidden_states(reader, batch, layer: int) -> torch.Tensor:
    """``[B, L, d]`` hidden states of ``layer`` (0 = embedding output, -1 = last, after the final norm)."""
    was_training = reader.model.training
    reader.model.eval()
    try:
        # the decoder stack of any causal LM (GPT-2's transformer, GPT-NeoX's gpt_neox, ...), found by the reader
        decoder = getattr(reader, "decoder", None) or reader.model.model
        out = decoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                      position_ids=batch.position_ids, output_hidden_states=True, use_cache=False)
    finally:
        reader.model.train(was_training)
    states = out.hidden_states
    if not -len(states) <= layer < len(states):
        raise InputError(f"layer must be in [-{len(states)}, {len(states) - 1}] for this reader, got {layer}",
                         field="layer")
    return states[layer]


def iter_token_attention(reader, questions: Sequence[str], passages: Sequence[list[Passage]],
                         answers: Sequence[str], *, signal: str = "prob", layer: int | None = None,
                         batch_size: int = 4, progress=None) -> Iterator[TokenAttention]:
    """Yield one :class:`TokenAttention` per question, running the reader ``batch_size`` questions at a time.

    Hidden states (``layer`` not None) cost a second forward pass and are large (``T x d`` per
    question), so this is a generator: consumers reduce them to relatedness scores and drop them.
    ``progress`` is an optional tqdm bar advanced by one per question.
    """
    check_signal(signal)
    if not len(questions) == len(passages) == len(answers):
        raise InputError("questions, passages and answers must have the same length")
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}", field="batch_size")
    for start in range(0, len(questions), batch_size):
        part = range(start, min(len(questions), start + batch_size))
        batch = reader.batch([questions[i] for i in part], [list(passages[i]) for i in part],
                             [answers[i] for i in part])
        scores = reader.capture_token_attention(batch, signal=signal).float().cpu().numpy()
        states = _hidden_states(reader, batch, layer).float().cpu().numpy() if layer is not None else None
        ids = batch.input_ids.cpu().numpy()
        for b, i in enumerate(part):
            spans = batch.passage_spans[b]
            positions = np.asarray([t for s, e in spans for t in range(s, e)], dtype=np.int64)
            rank = np.asarray([k for k, (s, e) in enumerate(spans) for _ in range(s, e)], dtype=np.int64)
            a_span, q_span = _span(batch.answer_spans[b]), _span(batch.question_spans[b])
            raw = scores[b, positions].astype(np.float64)
            view_states = None
            if states is not None:
                view_states = {"passage": states[b, positions], "answer": states[b, a_span],
                               "question": states[b, q_span]}
            yield TokenAttention(questions[i], answers[i], list(passages[i]), ids[b, positions], rank, raw,
                                 normalize_attention(raw), ids[b, a_span], ids[b, q_span], view_states)
            if progress is not None:
                progress.update(1)


def token_attention(reader, questions: Sequence[str], passages: Sequence[list[Passage]],
                    answers: Sequence[str], *, signal: str = "prob", layer: int | None = None,
                    batch_size: int = 4) -> list[TokenAttention]:
    """List form of :func:`iter_token_attention` (keep ``layer=None`` for many questions: states are big)."""
    return list(iter_token_attention(reader, questions, passages, answers, signal=signal, layer=layer,
                                     batch_size=batch_size))
