"""Judge every predictor of ``diagnose`` out of sample on every measured distillation (issue #42).

    python scripts/validate_predictors.py --sources scripts/validation_sources.json \\
        --out docs/results/analysis/validation.json

``--pilots`` (a ``pilots.jsonl`` of ``scripts/repilot.py``) judges the rows whose pilot was re-run
alone, at today's pilot settings, by that pilot instead of their own (interval, cost, time estimate).
``--sources`` lists the paper-grid ``results.json`` files to read (data label, optional ``variant``,
``skip`` and ``baselines``). Writes each distillation with its predictors (measured without test questions) and
outcome (test gold recall@1 of the row's final retriever), each predictor's leave-one-data-set-out
accuracy (``uncertain`` counts as wrong) against the other sets' majority guess, and where it fails,
as JSON with provenance and as Markdown beside it (``.md``). See :mod:`attnrag.analysis.validation`.
"""

from __future__ import annotations

import argparse
import json

from attnrag.analysis.validation import (PREDICTORS, as_records, leave_one_out, on_pilot_rows, pilot_cost,
                                         read_pilots, read_sources, table, teacher_choices, time_estimates,
                                         with_pilots)
from attnrag.errors import InputError
from attnrag.provenance import Provenance, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", required=True, help="JSON {sources: [{results, data[, variant, skip, baselines]}]}")
    parser.add_argument("--out", required=True)
    parser.add_argument("--pilots", default=None, help="pilots.jsonl of scripts/repilot.py: re-run pilots to judge")
    parser.add_argument("--tied-only", action="store_true",
                        help="with --pilots: only the tied-tower rows take their re-run; query towers keep their own")
    args = parser.parse_args()
    prov = Provenance.start()
    try:
        rows = read_sources(args.sources)
        if args.pilots:
            rows = with_pilots(rows, read_pilots(args.pilots), tied_only=args.tied_only)
    except InputError as err:  # a bad sources or results file: say which, and where, without a traceback
        raise SystemExit(f"error: {err}") from None
    loo = leave_one_out(rows)
    cost = pilot_cost(rows)
    timing = time_estimates(rows)
    choices = teacher_choices(rows)
    on_pilots = on_pilot_rows(rows, loo["calls"])
    result = {"pilots": args.pilots or "each row's own", "tied_only": args.tied_only,
              "pilots_rerun": sum(d.pilot_rerun for d in rows),
              "distillations": as_records(rows), "leave_one_data_set_out": loo, "pilot_cost": cost,
              "time_estimate": timing, "teacher_choices": choices,
              "diagnose_on_pilot_rows": on_pilots}
    out = write_result(args.out, result, prov)
    summary = ["| predictor | distillations judged | data sets | right | accuracy | majority guess on the same rows |",
               "|---|---|---|---|---|---|"]
    for name in PREDICTORS:
        p = loo["predictors"][name]
        summary.append(f"| {name} | {p['rows']} | {len(p['data_sets'])} ({', '.join(p['data_sets'])}) | {p['right']} | "
                       f"{p['accuracy']:.2f} | {p['majority_accuracy']:.2f} |")
    failures = "\n".join(f"- **{name}**: " + ("; ".join(loo["predictors"][name]["failures"]) or "none")
                         for name in PREDICTORS)
    md = "\n\n".join([
        "# diagnose's predictors out of sample (written by scripts/validate_predictors.py)",
        "Leave one data set out; `uncertain` counts as wrong; the majority guess is the other sets' most "
        "frequent outcome, said for every row of the held-out set:", "\n".join(summary),
        f"diagnose on the {on_pilots['rows']} rows with a pilot (as `diagnose --pilot` always runs one; "
        f"{len(on_pilots['data_sets'])} data sets): right on {on_pilots['right']}.",
        "Where each predictor fails:", failures,
        f"Pilots: {args.pilots or 'each row its own'} ({sum(d.pilot_rerun for d in rows)} rows judged by a pilot "
        "re-run alone). The pilot's share of its own full run's wall time, its own teacher pass over its questions "
        "included (rows that ran one; target: at most 0.10): "
        + json.dumps(cost),
        "The pilot's estimate of the full distillation loop after it (its preparation, steps and the tied "
        "tower's re-encodings, scaled by attnrag.train.timing) against that loop's time in the same run "
        "(target: within 25%): " + json.dumps(timing),
        "Which of two distillations (same file, same starting retriever) is better on test, by more than "
        f"{choices['margin']} gold recall@1, against the one whose pilot raised dev answer recall@1 more: right on "
        f"{choices['right']} of {choices['pairs']} pairs ({choices['level_pairs']} pairs level on test, not scored; "
        f"of the pairs whose final systems are of one kind, both dense or both fused: {choices['same_final']['right']} "
        f"of {choices['same_final']['pairs']}); "
        f"the pilot's favourite within {choices['margin']} of the file's best on test in {choices['top']['right']} of "
        f"{choices['top']['groups']} files. Wrong: " + ("; ".join(choices["failures"] + choices["top"]["failures"]) or "none"),
        "Every distillation (figures: difference [95% interval]; the call after it, out of sample):",
        table(rows, loo["calls"]),
    ]) + "\n"
    out.with_suffix(".md").write_text(md, encoding="utf-8")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
