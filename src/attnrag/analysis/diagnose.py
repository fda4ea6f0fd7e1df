"""``diagnose``: will attention distillation from this reader work? A verdict from the paper's indicators.

The paper's finding: distillation helps when the reader's answer tokens attend to answer-related
passage tokens and its attention correlates with relatedness; a reader that does not (an
off-the-shelf one, typically) teaches the retriever noise, and should be fine-tuned first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

from ..data.records import QAExample
from ..io import write_json
from ..reader.decoder import DecoderReader
from ..retrieval.encoder import BiEncoder
from ..retrieval.index import PassageIndex
from .analyze import RunSpec, load_examples, measure_run
from .indicators import ATTENTION_THRESHOLD, aggregate, json_safe

SHARE_KEY = f"answer_attn_share_ge_{ATTENTION_THRESHOLD:g}"

#: Verdict thresholds, set from this project's measured runs (docs/analysis.md, "Thresholds"): readers
#: whose distillation hurt retrieval had mean rho <= 0.05 (NQ, off-the-shelf SmolLM2: -0.038 gold
#: recall@1), readers whose distillation helped or held had rho >= 0.09 (synthetic world fine-tuned
#: 0.106: +0.127; NQ fine-tuned 0.09: +0.002); rho 0.06-0.08 went both ways (synthetic off-the-shelf
#: +0.070, SQuAD off-the-shelf -0.009). The share bounds keep the paper's (its harmful setting: 0.01;
#: its effective ones: >= 0.37); at 3-5 passages our readers' shares are 0.78-0.97 whatever the outcome,
#: so rho decides. ``share`` is the fraction of questions whose answer-related tokens get >= 0.057 of
#: the attention. Few measured readers stand behind these numbers: treat the verdict as a warning, and
#: where the data has gold passage ids compare the teacher's top-1 accuracy with the retriever's.
THRESHOLDS: dict[str, float] = {
    "effective_share": 0.25,  # share >= this AND rho >= effective_rho -> likely effective
    "effective_rho": 0.09,
    "ineffective_share": 0.10,  # share < this OR rho < ineffective_rho -> likely ineffective
    "ineffective_rho": 0.055,
}


def verdict(indicators: dict, thresholds: dict[str, float] | None = None) -> tuple[str, str]:
    """``(label, message)`` from aggregated indicators.

    ``label`` is ``effective``, ``uncertain``, ``ineffective``, or ``unknown`` when undefined.
    """
    t = {**THRESHOLDS, **(thresholds or {})}
    share, rho = indicators.get(SHARE_KEY), indicators.get("answer_rho_mean")
    if share is None or rho is None or not (math.isfinite(share) and math.isfinite(rho)):
        return "unknown", "the indicators could not be computed on this sample (no usable question)"
    numbers = f"share {share:.2f}, rho {rho:.2f}"
    if share < t["ineffective_share"] or rho < t["ineffective_rho"]:
        return "ineffective", (
            f"attention distillation from this reader is likely ineffective: its answer tokens barely attend "
            f"to answer-related passage tokens ({numbers}); fine-tune the reader first")
    if share >= t["effective_share"] and rho >= t["effective_rho"]:
        return "effective", (
            f"attention distillation from this reader is likely effective: its answer tokens attend to "
            f"answer-related passage tokens ({numbers})")
    return "uncertain", (
        f"attention distillation from this reader is uncertain: its attention to answer-related tokens is "
        f"weak ({numbers}); fine-tuning the reader first is the safer choice")


def diagnose(reader: RunSpec, data: str | Path | Sequence[QAExample], n: int = 200,
             index: str | Path | PassageIndex | None = None, *,
             retriever: str | Path | BiEncoder | None = None, n_passages: int = 5, signal: str = "prob",
             relatedness: str = "embedding", percentile: float = 95, layer: int | None = None,
             batch_size: int = 4, thresholds: dict[str, float] | None = None, out: str | Path | None = None,
             device: str | None = None, progress: bool = True) -> dict:
    """The indicators of ``reader`` on the first ``n`` questions of ``data``, with a verdict.

    ``reader`` is a reader name, a model directory, a run directory or a :class:`DecoderReader`;
    a bare reader is read with ``retriever`` (default: the project's) over ``index``. The result is
    also written to ``out`` as JSON when given.
    """
    start = time.time()
    examples = load_examples(data, n)
    _, results = measure_run(reader, examples, n_passages=n_passages, signal=signal, relatedness=relatedness,
                             percentile=percentile, layer=layer, batch_size=batch_size, index=index,
                             retriever=retriever, device=device, desc="diagnose", progress=progress)
    agg = aggregate([r.stats for r in results])
    label, message = verdict(agg, thresholds)
    report = json_safe({
        "reader": reader.name if hasattr(reader, "model") else str(reader),
        "verdict": label,
        "message": message,
        "indicators": agg,
        "thresholds": {**THRESHOLDS, **(thresholds or {})},
        "settings": {"n_questions": len(examples), "n_passages": n_passages, "signal": signal,
                     "relatedness": relatedness, "percentile": percentile, "layer": layer},
        "wall_seconds": round(time.time() - start, 2),
    })
    if out is not None:
        write_json(out, report)
    return report
