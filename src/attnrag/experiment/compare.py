"""A paired bootstrap of any two rows of an experiment directory, dense or fused with BM25.

Every row of ``attnrag experiment paper`` saves the ids it retrieved for every test question
(``predictions/<row>.retrieval.jsonl``; a dense row's fusion with BM25 as ``<row>+bm25``), so two
rows can be set against each other question by question, with no model loaded:

    attnrag experiment compare --out OUT --pair gated-bm25-full-kl@final:answer-bm25-full-inbatch@final

A row is named ``KEY`` (its dense retriever, or the first stage itself for ``bm25`` / ``hybrid``),
``KEY+bm25`` (fused with BM25 at the dev-chosen weight) or ``KEY@final`` (whichever of the two its
dev split picked, as the tables report it). The metric is gold recall@k on the test questions with
gold passage ids; the interval is :func:`attnrag.evaluate.bootstrap.paired_bootstrap`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.formats import load_corpus_dir
from ..errors import InputError
from ..evaluate.bootstrap import gold_hits_at_k, paired_bootstrap
from .config import RETRIEVAL_SUFFIX
from .report import final_retriever


def resolve_row(results: dict, name: str) -> str:
    """The predictions key of ``name`` (``KEY``, ``KEY+bm25`` or ``KEY@final``)."""
    key, _, final = name.partition("@")
    if final and final != "final":
        raise InputError(f"a row is KEY, KEY+bm25 or KEY@final, got {name!r}", field="--pair")
    base = key.removesuffix("+bm25")
    record = results.get("rows", {}).get(base)
    if record is None or record.get("status") != "done":
        raise InputError(f"no finished row {base!r}; finished: "
                         f"{', '.join(k for k, r in results.get('rows', {}).items() if r.get('status') == 'done')}",
                         field="--pair")
    if not final:
        return key
    chosen = final_retriever(record)
    return f"{base}+bm25" if chosen is not None and chosen["kind"] == "hybrid" else base


def row_hits(out: Path, key: str, examples: list, k: int) -> np.ndarray:
    """1.0 where the row's top ``k`` holds a gold passage, per question of ``examples``."""
    path = Path(out) / "predictions" / f"{key}{RETRIEVAL_SUFFIX}"
    if not path.is_file():
        raise InputError(f"no saved retrieval for {key!r} (rows measured before retrievals were saved have none; "
                         "rerun the row)", path=path)
    rows = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
            rows[row["id"]] = row["retrieved"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"line {number} is not a retrieval row ({exc})", path=path, field="retrieved") from exc
    missing = [e.id for e in examples if e.id not in rows]
    if missing:
        raise InputError(f"{len(missing)} test questions have no saved retrieval (first: {missing[0]})", path=path)
    depth = min(len(rows[e.id]) for e in examples)
    if k > depth:  # recall@k over fewer than k ids would be recall@depth under another name
        raise InputError(f"the saved retrievals hold the top {depth} passages per question (the K the reader "
                         f"read), so gold recall@{k} cannot be paired from them; use k <= {depth}", path=path,
                         field="k")
    return gold_hits_at_k([rows[e.id] for e in examples], examples, k)


def _results(out: Path) -> dict:
    results_path = out / "results.json"
    if not results_path.is_file():
        raise InputError("not an experiment directory (no results.json)", path=out)
    return json.loads(results_path.read_text(encoding="utf-8"))


def _test_questions(results: dict, out: Path) -> list:
    """The experiment's retrieval test questions with gold passage ids (the ones rows are paired on)."""
    if "data" not in results:
        raise InputError("results.json names no data directory", path=out / "results.json", field="data")
    _, splits = load_corpus_dir(results["data"], results.get("distractors"))
    return [e for e in splits["test"][: results.get("n_retrieval_test")] if e.gold_passage_ids]


def _signature(examples: list) -> list[tuple]:
    """What makes two experiments' test questions the same ones (two generated worlds of the same seed
    live in two directories): ids, questions, answers and gold passage ids, in order."""
    return [(e.id, e.question, tuple(e.answers), tuple(sorted(e.gold_passage_ids))) for e in examples]


def compare_rows(out: str | Path, pairs: list[tuple[str, str]], ks: tuple[int, ...] = (1,),
                 b_out: str | Path | None = None) -> dict:
    """Each ``(a, b)`` pair: gold recall@k of both and ``a - b`` with a 95% paired interval. ``b_out``:
    another experiment directory over the same data and test questions that the ``b`` rows come from
    (e.g. one run with another teacher temperature)."""
    out = Path(out)
    b_out = Path(b_out) if b_out is not None else out
    results, results_b = _results(out), _results(b_out)
    examples = _test_questions(results, out)
    if b_out != out and (results.get("n_retrieval_test") != results_b.get("n_retrieval_test") or (
            Path(results["data"]).resolve() != Path(results_b["data"]).resolve()
            and _signature(examples) != _signature(_test_questions(results_b, b_out)))):
        raise InputError(f"{b_out} is an experiment on other data or other test questions than {out}; rows are "
                         "paired only over the same questions", path=b_out / "results.json")
    if len(examples) < 2:
        raise InputError("the test questions need gold passage ids to compare retrievals", path=results["data"])
    compared = []
    for a, b in pairs:
        key_a, key_b = resolve_row(results, a), resolve_row(results_b, b)
        row = {"a": a, "b": b, "a_key": key_a, "b_key": key_b, "n": len(examples),
               **({"b_experiment": str(b_out)} if b_out != out else {})}
        for k in ks:
            hits_a, hits_b = row_hits(out, key_a, examples, k), row_hits(b_out, key_b, examples, k)
            row[f"gold_recall@{k}"] = {"a": float(hits_a.mean()), "b": float(hits_b.mean()),
                                       **paired_bootstrap(hits_a, hits_b)}
        compared.append(row)
    return {"experiment": str(out), **({"b_experiment": str(b_out)} if b_out != out else {}),
            "metric": "gold recall@k, a - b, 95% paired bootstrap", "pairs": compared}


def parse_pairs(specs: list[str]) -> list[tuple[str, str]]:
    pairs = []
    for spec in specs:
        a, sep, b = spec.partition(":")
        if not sep or not a or not b:
            raise InputError(f"expected A:B, got {spec!r}", field="--pair")
        pairs.append((a, b))
    return pairs


__all__ = ["compare_rows", "parse_pairs", "resolve_row", "row_hits"]
