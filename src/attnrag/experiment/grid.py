"""The target x loss grid of an experiment: every finished grid row against DPR's answer-match row
and against the best first stage a user has, each paired question by question, and the winner
picked on dev (docs/method.md, "Target and loss"). The ``supervised`` rows (gold passage labels on the
same candidates, tower and steps) are the grid's ceiling: how much any target could add over answer
match at this budget; they are never the winner.

Grid rows are ``<base>-<first stage>-full-<kl|inbatch>`` (:data:`~attnrag.experiment.config.TARGET_GRID`);
the reference is answer match as DPR trains it (in-batch) on the same candidates. A row's final
retriever is its dense retriever alone or fused with BM25, whichever its dev split picked.
"""

from __future__ import annotations

from pathlib import Path

from .compare import compare_rows
from .config import LOSS_SUFFIXES, TARGET_GRID, parse_variant
from .report import final_retriever

TARGETS_OF_BASE = {base: target for base, target, _ in TARGET_GRID}
READERLESS = ("answer", "supervised")  # bases whose target needs no reader
LABELLED = ("supervised",)  # bases whose target needs gold passage ids: the grid's ceiling, never its winner


def grid_rows(results: dict) -> list[tuple[str, tuple]]:
    """The finished grid rows, in the results' order, with their parsed variant."""
    out = []
    for key in results.get("order", list(results.get("rows", {}))):
        record = results["rows"].get(key) or {}
        variant = parse_variant(key)
        if record.get("status") == "done" and variant and variant[0] in TARGETS_OF_BASE and variant[3]:
            out.append((key, variant))
    return out


def target_grid(out: str | Path, results: dict) -> dict | None:
    """Every finished grid row: target, loss, what its target knows, dense / fused / final gold
    recall@1, and the final retriever against the answer-match reference of the same first stage
    and against the best first stage (95% paired intervals); ``None`` without grid rows."""
    rows = grid_rows(results)
    if not rows:
        return None
    first_stage = (results.get("first_stage_intervals") or {}).get("rows", {})
    table = {}
    for key, (base, stage, _, loss) in rows:
        record = results["rows"][key]
        final = final_retriever(record) or {}
        stats = record.get("target_stats") or {}
        reference = f"answer-{stage}-full-inbatch"
        entry = {
            "target": TARGETS_OF_BASE[base] + (" (drop)" if base == "gated-drop" else ""),
            "loss": LOSS_SUFFIXES[loss], "uses_reader": base not in READERLESS, "needs_gold_ids": base in LABELLED,
            "favourite_is_gold": stats.get("favourite_is_gold"),
            "favourite_holds_answer": stats.get("favourite_holds_answer"),
            "left_out": stats.get("left_out"), "questions": stats.get("questions"),
            "dense_gold_recall@1": record.get("gold_recall@1"),
            "fused_gold_recall@1": (record.get("with_bm25") or {}).get("gold_recall@1"),
            "final": final.get("kind"), "final_gold_recall@1": final.get("gold_recall@1"),
            "final_gold_recall@5": final.get("gold_recall@5"), "final_dev_recall@1": final.get("dev_recall@1"),
            "em": final.get("em"), "f1": final.get("f1"),
            "wall_seconds": record.get("wall_seconds"),
            "vs_best_first_stage": (first_stage.get(key) or {}).get("vs_picked_on_dev"),
        }
        if key != reference and results["rows"].get(reference, {}).get("status") == "done":
            pair = compare_rows(out, [(f"{key}@final", f"{reference}@final")], ks=(1,))["pairs"][0]
            entry["vs_answer_match"] = {"reference": reference, **pair["gold_recall@1"]}
        table[key] = entry
    with_reader = {k: v for k, v in table.items() if v["uses_reader"] and v["final_dev_recall@1"] is not None}
    winner = max(with_reader, key=lambda k: with_reader[k]["final_dev_recall@1"], default=None)
    return {"rows": table, "winner_on_dev": winner,
            "how": "winner: the reader-using row with the highest final dev answer recall@1 (never test)"}


__all__ = ["grid_rows", "target_grid"]
