"""How related each passage token is to the answer (or the question), and which tokens count as related.

The paper calls the passage tokens most similar to the answer "answer-related" (the same with the
question: "question-related") but does not say which similarity; two are offered:

* ``embedding`` (default): cosine similarity between the passage token's vector and its
  best-matching answer (question) token, i.e. the max over target tokens. Vectors are the reader's
  input embeddings by default (context-free: a token is related because of *what* it is), or the
  hidden states of a chosen layer (contextual: also *where* it is). With input embeddings the
  targets also include the tokens of `` <answer>`` (space-prefixed), the form a word takes inside
  running text, since the prompt tokenises the answer on its own ("Paris" and " Paris" are two ids).
* ``lexical``: 1 when the passage token's normalised form equals the normalised form of an answer
  (question) token, else 0. Normalisation: lower case, drop the tokenizer's word markers (``Ġ``,
  ``▁``, ``##``) and every Unicode punctuation / symbol character; empty forms and English
  stopwords never match.

Target tokens that are stopwords or punctuation (``the`` in "the Beatles", ``?`` in a question) are
dropped for both kinds (unless nothing else is left): otherwise every ``the`` of the passages
would be as "answer-related" as the answer itself (cosine 1).

Related tokens: relatedness at or above the ``percentile``-th percentile (``numpy.percentile``,
linear interpolation; default 95) of the question's passage tokens, *and* above the question's
minimum relatedness. The second condition only matters for ties at the bottom: lexical relatedness
is 0/1, so when fewer than 5% of the tokens match, the 95th percentile is 0 and would otherwise
mark every token; with it the lexical related tokens are exactly the matching tokens.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

KINDS = ("embedding", "lexical")

#: A small English stopword list (function words that carry no answer content).
STOPWORDS = frozenset("""
a an the and or but nor of to in on at by for from with without into onto over under about as than then
is are was were be been being am do does did done has have had having it its it's this that these those
there here he she they them their theirs his her hers him we us our you your i me my mine who whom whose
what which when where why how not no yes so if s t d ll m re ve also only very just can could would should
will shall may might must
""".split())

_MARKERS = ("Ġ", "▁", "Ċ", "##")


def normalize_token(text: str) -> str:
    """Lower-case ``text`` and strip word markers, whitespace, punctuation and symbols."""
    for marker in _MARKERS:
        text = text.replace(marker, "")
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(ch for ch in text if not ch.isspace() and unicodedata.category(ch)[0] not in "PS")


def is_content(form: str) -> bool:
    """A normalised form that can carry meaning: not empty and not a stopword."""
    return bool(form) and form not in STOPWORDS


def decode_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token id decoded on its own (bytes merged into text, markers turned into spaces)."""
    ids = [int(i) for i in ids]
    if not ids:
        return []
    return tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)


def content_positions(token_texts: Sequence[str]) -> np.ndarray:
    """Indices of the tokens that carry content; all of them when none does."""
    keep = np.array([is_content(normalize_token(t)) for t in token_texts], dtype=bool)
    return np.flatnonzero(keep) if keep.any() else np.arange(len(token_texts))


def lexical_relatedness(passage_tokens: Sequence[str], target_tokens: Sequence[str]) -> np.ndarray:
    """``[T]`` 1.0 where the passage token's normalised form is a (content) target token's form, else 0."""
    targets = {f for f in map(normalize_token, target_tokens) if is_content(f)}
    return np.array([1.0 if normalize_token(t) in targets else 0.0 for t in passage_tokens], dtype=np.float64)


def cosine_relatedness(passage_vectors: np.ndarray, target_vectors: np.ndarray) -> np.ndarray:
    """``[T]`` max over target vectors of the cosine with each passage vector (NaN without targets)."""
    p = np.asarray(passage_vectors, dtype=np.float64)
    t = np.asarray(target_vectors, dtype=np.float64)
    if len(t) == 0:
        return np.full(len(p), np.nan)
    p = p / np.maximum(np.linalg.norm(p, axis=-1, keepdims=True), 1e-12)
    t = t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
    return (p @ t.T).max(axis=1)


def percentile_threshold(relatedness: np.ndarray, percentile: float = 95) -> float:
    """``numpy.percentile`` of the finite relatedness values (NaN when there are none)."""
    values = np.asarray(relatedness, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.percentile(values, percentile)) if values.size else float("nan")


def related_mask(relatedness: np.ndarray, percentile: float = 95) -> np.ndarray:
    """Tokens at or above the percentile threshold and above the minimum (see the module docstring)."""
    rel = np.asarray(relatedness, dtype=np.float64)
    finite = np.isfinite(rel)
    if not finite.any():
        return np.zeros(rel.shape, dtype=bool)
    threshold = percentile_threshold(rel, percentile)
    with np.errstate(invalid="ignore"):
        return finite & (rel >= threshold) & (rel > rel[finite].min())


def token_relatedness(reader, view, target: str = "answer", kind: str = "embedding") -> np.ndarray:
    """``[T]`` relatedness of ``view``'s passage tokens to its answer or question tokens.

    ``view`` is a :class:`~attnrag.analysis.token_attention.TokenAttention`; the embedding kind uses
    its hidden states when it carries some, else the reader's input embedding table.
    """
    if kind not in KINDS:
        raise ValueError(f"relatedness must be one of {KINDS}, got {kind!r}")
    if target not in ("answer", "question"):
        raise ValueError(f"target must be 'answer' or 'question', got {target!r}")
    target_ids = view.answer_ids if target == "answer" else view.question_ids
    if len(target_ids) == 0 or len(view.token_ids) == 0:
        return np.full(len(view.token_ids), np.nan)
    tokenizer = reader.tokenizer
    target_texts = decode_tokens(tokenizer, target_ids)
    if kind == "lexical":
        return lexical_relatedness(decode_tokens(tokenizer, view.token_ids), target_texts)
    keep = content_positions(target_texts)
    if view.states is not None:
        return cosine_relatedness(view.states["passage"], view.states[target][keep])
    ids = np.asarray(target_ids)[keep]
    # The prompt tokenises the answer / question on its own, so its first word lacks the leading space
    # it has inside running text ("Paris" vs " Paris": two token ids); add the in-text form too.
    in_text = tokenizer(" " + tokenizer.decode(target_ids).strip(), add_special_tokens=False)["input_ids"]
    in_text = [i for i, t in zip(in_text, decode_tokens(tokenizer, in_text), strict=True)
               if is_content(normalize_token(t))]
    ids = np.union1d(ids, np.asarray(in_text, dtype=np.int64))
    table = reader.model.get_input_embeddings().weight
    return cosine_relatedness(_rows(table, view.token_ids), _rows(table, ids))


def _rows(table, ids: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        index = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=table.device)
        return table[index].float().cpu().numpy()
