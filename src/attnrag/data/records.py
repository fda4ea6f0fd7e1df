"""The two record types everything else passes around: passages and QA examples."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Passage:
    """One retrievable unit of text. ``title`` is prepended to ``text`` when encoding and reading."""

    id: str
    title: str
    text: str
    section: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["section"] is None:
            del d["section"]
        return d


@dataclass(frozen=True)
class QAExample:
    """A question with its gold answers; ``gold_passage_ids`` is empty when unknown (e.g. NQ-open)."""

    id: str
    question: str
    answers: list[str]
    gold_passage_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)
