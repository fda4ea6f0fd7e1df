"""Refit ``diagnose``'s thresholds on every measured reader and report their out-of-sample accuracy.

    python scripts/diagnose_thresholds.py --sources scripts/threshold_sources.json \\
        --out docs/results/analysis/thresholds.json

``--sources`` lists the paper-grid ``results.json`` files to read, each with a data label and the
retriever scoring it was measured with (``cosine``, or ``dot`` for the runs before the baseline fix).
Writes the measured readers, the current and the fitted thresholds with their in-sample scores, and
the leave-one-data-set-out accuracy (against always guessing the other sets' majority outcome), as
JSON with provenance, and the same as a Markdown table next to it (``.md``). See
:mod:`attnrag.analysis.thresholds`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from attnrag.analysis.diagnose import THRESHOLDS
from attnrag.analysis.thresholds import MARGIN, PRIOR, as_records, collect, fit, leave_one_out, score, table
from attnrag.provenance import Provenance, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", required=True, help="JSON list of {results, data, scoring[, variant]}")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    prov = Provenance.start()
    readers = []
    listed = json.loads(Path(args.sources).read_text(encoding="utf-8"))
    for source in listed["sources"] if isinstance(listed, dict) else listed:
        readers += collect(source["results"], source["data"], source.get("scoring", "cosine"), source.get("variant"))
    fitted = fit(readers)
    result = {
        "margin": MARGIN,
        "readers": as_records(readers),
        "prior_thresholds": PRIOR,
        "prior_score": score(readers, PRIOR),
        "shipped_thresholds": THRESHOLDS,
        "fitted_thresholds": fitted,
        "fitted_score_in_sample": score(readers, fitted),
        "leave_one_data_set_out": leave_one_out(readers, by="data"),
    }
    out = write_result(args.out, result, prov)
    loo = result["leave_one_data_set_out"]
    md = "\n\n".join([
        "# diagnose: every measured reader (written by scripts/diagnose_thresholds.py)",
        "Verdicts under the prior (hand-set) thresholds " + json.dumps(PRIOR) + ":", table(readers, PRIOR),
        "Verdicts under the fitted thresholds " + json.dumps(fitted) + ":", table(readers, fitted),
        f"Prior thresholds, in sample: {json.dumps(result['prior_score'])}",
        f"Fitted thresholds, in sample: {json.dumps(result['fitted_score_in_sample'])}",
        f"Leave one data set out (fit on the others): {json.dumps(loo['pooled'])}; majority-guess baseline: "
        f"{json.dumps(loo['majority_baseline'])}",
    ]) + "\n"
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
