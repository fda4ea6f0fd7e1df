"""Per-question attention indicators, their aggregates over a question set, and the trainer hook.

Per question (over its passage tokens, attention normalised to sum to 1):

* ``answer_attn_share`` / ``question_attn_share``: the attention the answer-related (question-related)
  tokens receive in total; ``*_attn_mean``: the same per related token.
* ``answer_rho`` / ``question_rho``: Spearman correlation between attention and relatedness
  (``scipy.stats.spearmanr``, ties averaged; NaN when either side is constant or has < 2 tokens).
* ``topk_answer`` / ``topk_question``: the share of the ``top_k`` most attended tokens that are
  answer- (question-) related.

Over a set: the share of questions whose answer-related tokens get attention >= 0.057 (the paper's
first bin edge), mean and median rho, and histograms on the paper's bins. A good teacher scores high
on both; see :mod:`attnrag.analysis.diagnose` for the verdict built on them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from ..data.records import Passage, QAExample
from ..errors import InputError
from .relatedness import KINDS, related_mask, token_relatedness
from .token_attention import TokenAttention, check_signal, iter_token_attention

#: The paper's threshold on the answer-related attention share (its first histogram bin edge).
ATTENTION_THRESHOLD = 0.057
#: The paper's attention bins: 8 bins of width 0.057 from 0 (the last one also counts larger shares).
ATTENTION_BINS = np.round(np.arange(9) * ATTENTION_THRESHOLD, 3)
#: The paper's Spearman bins: 8 bins of width 0.25 over [-1, 1].
RHO_BINS = np.linspace(-1.0, 1.0, 9)

#: The paper's NQ numbers, read from its figure (``reference/nq_answer_p95_digitized.json``).
PAPER_NQ = {
    "Off-the-shelf checkpoint": {"answer_attn_share_ge_0.057": 0.21, "answer_rho_mean": 0.19},
    "Off-the-shelf distillation": {"answer_attn_share_ge_0.057": 0.01, "answer_rho_mean": 0.08},
    "Fine-tuned distillation, Step 1": {"answer_attn_share_ge_0.057": 0.37, "answer_rho_mean": 0.28},
    "Fine-tuned distillation, Step 2": {"answer_attn_share_ge_0.057": 0.56, "answer_rho_mean": 0.35},
    "Atlas-large distillation": {"answer_attn_share_ge_0.057": 0.61, "answer_rho_mean": 0.29},
}


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rho over the positions where both are finite; NaN when undefined (constant or < 2 values)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _related_stats(prefix: str, attention: np.ndarray, relatedness: np.ndarray | None, percentile: float,
                   top: np.ndarray) -> dict:
    nan = float("nan")
    if relatedness is None or not np.isfinite(relatedness).any() or not np.isfinite(attention).all():
        return {f"n_{prefix}_related": 0, f"{prefix}_attn_share": nan, f"{prefix}_attn_mean": nan,
                f"{prefix}_rho": nan, f"topk_{prefix}": nan}
    mask = related_mask(relatedness, percentile)
    share = float(attention[mask].sum())
    return {
        f"n_{prefix}_related": int(mask.sum()),
        f"{prefix}_attn_share": share,
        f"{prefix}_attn_mean": share / mask.sum() if mask.any() else nan,
        f"{prefix}_rho": spearman(attention, relatedness),
        f"topk_{prefix}": float(mask[top].mean()) if top.size else nan,
    }


def question_stats(attention: np.ndarray, answer_rel: np.ndarray | None,
                   question_rel: np.ndarray | None = None, *, percentile: float = 95,
                   top_k: int = 10) -> dict:
    """The per-question indicators of one normalised attention vector (see the module docstring)."""
    attention = np.asarray(attention, dtype=np.float64)
    top = np.zeros(0, dtype=int)
    if np.isfinite(attention).all():
        top = np.argsort(-attention, kind="stable")[: min(top_k, attention.size)]
    out: dict = {"n_tokens": int(attention.size)}
    out.update(_related_stats("answer", attention, answer_rel, percentile, top))
    out.update(_related_stats("question", attention, question_rel, percentile, top))
    return out


def histogram(values: Sequence[float], edges: np.ndarray, clip: bool = False) -> list[int]:
    """Counts of the finite ``values`` per bin; ``clip`` puts values beyond the edges in the end bins."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if clip:
        v = np.clip(v, edges[0], edges[-1])
    return np.histogram(v, bins=edges)[0].astype(int).tolist()


def _finite(stats: Sequence[dict], key: str) -> np.ndarray:
    v = np.asarray([s.get(key, float("nan")) for s in stats], dtype=np.float64)
    return v[np.isfinite(v)]


def _mean(v: np.ndarray) -> float:
    return float(v.mean()) if v.size else float("nan")


def _median(v: np.ndarray) -> float:
    return float(np.median(v)) if v.size else float("nan")


def aggregate(stats: Sequence[dict], threshold: float = ATTENTION_THRESHOLD) -> dict:
    """Set-level indicators over per-question stats (a question is left out of the values it leaves NaN)."""
    out: dict = {"n_questions": len(stats)}
    for target in ("answer", "question"):
        share = _finite(stats, f"{target}_attn_share")
        rho = _finite(stats, f"{target}_rho")
        out[f"{target}_attn_share_ge_{threshold:g}"] = _mean((share >= threshold).astype(float))
        out[f"{target}_attn_share_mean"] = _mean(share)
        out[f"{target}_attn_share_median"] = _median(share)
        out[f"{target}_rho_mean"] = _mean(rho)
        out[f"{target}_rho_median"] = _median(rho)
        out[f"{target}_rho_undefined"] = len(stats) - int(rho.size)
        out[f"topk_{target}_mean"] = _mean(_finite(stats, f"topk_{target}"))
    out["hist"] = {
        "attention_edges": ATTENTION_BINS.tolist(),
        "rho_edges": RHO_BINS.tolist(),
        **{f"{t}_attention": histogram([s.get(f"{t}_attn_share") for s in stats], ATTENTION_BINS, clip=True)
           for t in ("answer", "question")},
        **{f"{t}_rho": histogram([s.get(f"{t}_rho") for s in stats], RHO_BINS)
           for t in ("answer", "question")},
    }
    return out


@dataclass
class QuestionResult:
    """One question's token view, its relatedness vectors and its indicators."""

    view: TokenAttention
    answer_rel: np.ndarray
    question_rel: np.ndarray
    stats: dict


def measure(reader, questions: Sequence[str], passages: Sequence[list[Passage]], answers: Sequence[str], *,
            signal: str = "prob", relatedness: str = "embedding", percentile: float = 95,
            layer: int | None = None, top_k: int = 10, batch_size: int = 4,
            progress=None) -> list[QuestionResult]:
    """Run the reader on each question and compute its indicators (hidden states are dropped as they go)."""
    check_signal(signal)
    if relatedness not in KINDS:
        raise InputError(f"relatedness must be one of {', '.join(KINDS)}, got '{relatedness}'",
                         field="relatedness")
    results = []
    for view in iter_token_attention(reader, questions, passages, answers, signal=signal, layer=layer,
                                     batch_size=batch_size, progress=progress):
        a_rel = token_relatedness(reader, view, "answer", relatedness)
        q_rel = token_relatedness(reader, view, "question", relatedness)
        view.states = None
        stats = question_stats(view.attention, a_rel, q_rel, percentile=percentile, top_k=top_k)
        results.append(QuestionResult(view, a_rel, q_rel, stats))
    return results


def training_indicator_hook(signal: str = "prob", relatedness: str = "embedding", percentile: float = 95, *,
                            layer: int | None = None, batch_size: int = 4
                            ) -> Callable[[object, list[QAExample], list[list[Passage]]], dict]:
    """A trainer callback logging the paper's indicators on a fixed dev sample at each evaluation.

    The returned ``hook(reader, examples, retrieved)`` reads each example with its first gold answer
    and returns ``ind_answer_attn_share_ge_0.057`` (share of questions), ``ind_answer_rho_mean`` and
    ``ind_question_attn_mean`` (mean over questions of the question-related attention share);
    ``None`` where a value is undefined, so the metrics log stays valid JSON.
    """
    check_signal(signal)

    def hook(reader, examples: list[QAExample], retrieved: list[list[Passage]]) -> dict:
        keep = [i for i, e in enumerate(examples) if e.answers and retrieved[i]]
        from ..reader.fid import as_analysis_reader

        results = measure(as_analysis_reader(reader), [examples[i].question for i in keep], [retrieved[i] for i in keep],
                          [examples[i].answers[0] for i in keep], signal=signal, relatedness=relatedness,
                          percentile=percentile, layer=layer, batch_size=batch_size)
        agg = aggregate([r.stats for r in results])
        share_key = f"answer_attn_share_ge_{ATTENTION_THRESHOLD:g}"
        values = {
            f"ind_{share_key}": agg[share_key],
            "ind_answer_rho_mean": agg["answer_rho_mean"],
            "ind_question_attn_mean": agg["question_attn_share_mean"],
        }
        return {k: (v if math.isfinite(v) else None) for k, v in values.items()}

    return hook


def json_safe(obj):
    """Replace NaN / inf floats (not valid JSON) by ``None``, recursively; numpy scalars become Python's."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def attach_indicators(trainer, **hook_options) -> None:
    """The one way a trainer gets the paper's indicators: a :func:`training_indicator_hook` logged at
    each evaluation on ``trainer.config.indicator_questions`` dev questions (none when that is 0).

    The API's ``train``, the demo and the paper grid all call this, so the three log the same values.
    """
    trainer.indicator_hook = training_indicator_hook(**hook_options)
