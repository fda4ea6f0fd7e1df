"""Corpora and QA data: record types, strict loaders/writers, and the synthetic fictional world.

``formats`` reads attnrag/ATLAS jsonl, FlashRAG wiki jsonl, DPR ``psgs_w100.tsv``, NQ-open and
TriviaQA-style QA files, rejecting bad input with an :class:`~attnrag.errors.InputError` that names
file, line and field. ``synth`` generates a fictional QA world whose answers no model can recall.
"""

from attnrag.data.formats import (
    load_corpus_dir,
    load_passages,
    load_qa,
    write_dpr_tsv,
    write_nq_open,
    write_passages,
    write_qa,
)
from attnrag.data.records import Passage, QAExample
from attnrag.data.synth import World, generate_world, write_world

__all__ = [
    "Passage",
    "QAExample",
    "World",
    "generate_world",
    "load_corpus_dir",
    "load_passages",
    "load_qa",
    "write_dpr_tsv",
    "write_nq_open",
    "write_passages",
    "write_qa",
    "write_world",
]
