"""Loaders and writers for the corpus and QA formats attnrag reads, with strict validation.

Why strict: a training run that silently drops a malformed line, or turns an empty answer into a
question nobody can get right, produces numbers that look fine and are wrong. So every record is
either loaded exactly or rejected with an :class:`~attnrag.errors.InputError` that names the file,
the 1-based line, the field and what was expected there. Blank lines are the only thing skipped.

Formats read:

* passages, jsonl (``.jsonl`` or ``.json`` holding one object per line):
  - ATLAS / attnrag: ``id`` (str or int), ``title`` (str, may be empty), ``text`` (non-empty str),
    optional ``section`` (str or null);
  - FlashRAG wiki dumps: ``id`` and ``contents`` = a quoted title line, a newline, the text.
* passages, DPR ``psgs_w100.tsv`` (``.tsv``): a header naming ``id``, ``text`` and ``title``,
  tab-separated, CSV quoting (fields may contain tabs, quotes and newlines when quoted).
* QA, jsonl: ``question`` and one answer field, looked up in this order: ``answers`` (list of str;
  ATLAS / attnrag), ``target`` (str or list; ATLAS TriviaQA), ``answer`` (list; NQ-open). Optional
  ``id`` (default ``"<file stem>-<line>"``) and ``gold_passage_ids`` (list of str or int).

Extra keys in an object are ignored (corpora carry metadata we have no use for); a key that appears
twice in one object is an error, because JSON parsers disagree on which copy wins.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from attnrag.data.records import Passage, QAExample
from attnrag.errors import InputError
from attnrag.io import atomic_open, write_jsonl

#: Lines longer than this are rejected before parsing: no real record is that long, and parsing a
#: runaway line (a file without newlines, a binary blob) would cost memory for nothing.
MAX_LINE_CHARS = 1_000_000

#: DPR passages can be long and CSV's default field limit (128 KiB) is per field; this is generous
#: but finite, so that an unterminated quote cannot swallow a whole multi-gigabyte file unnoticed.
CSV_FIELD_LIMIT = 64 * MAX_LINE_CHARS

SPLITS = ("train", "dev", "test")

_JSONL_SUFFIXES = (".jsonl", ".json")
_TSV_SUFFIXES = (".tsv",)


# --------------------------------------------------------------------------------------------------
# Reading lines


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError("file not found", path=path)
    if not path.is_file():
        raise InputError("expected a file, found a directory or special file", path=path)


def _iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, text)`` for every line of ``path``, with its ``\\n`` (or ``\\r\\n``) kept.

    The file is read as bytes and split on ``\\n`` only, so that JSON strings holding U+2028 or a
    lone ``\\r`` are not cut in two, each line is decoded on its own (a bad byte is reported with
    its line), and a line longer than :data:`MAX_LINE_CHARS` is reported without reading it whole.
    """
    # A UTF-8 character is at most 4 bytes, so more than this many bytes is surely too many chars.
    byte_limit = 4 * MAX_LINE_CHARS + 2
    with open(path, "rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(byte_limit)
            if not raw:
                return
            lineno += 1
            if len(raw) >= byte_limit and not raw.endswith(b"\n"):
                raise InputError(
                    f"line is over the limit of {MAX_LINE_CHARS:,} characters; expected one record per line",
                    path=path,
                    line=lineno,
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"not valid UTF-8 (byte {raw[exc.start]:#04x} at column {exc.start + 1}); "
                    "expected UTF-8 text",
                    path=path,
                    line=lineno,
                ) from None
            if lineno == 1 and text.startswith("\ufeff"):
                text = text[1:]  # a byte-order mark is an encoding artefact, not content
            n_chars = len(text.rstrip("\n").rstrip("\r"))
            if n_chars > MAX_LINE_CHARS:
                raise InputError(
                    f"line is {n_chars:,} characters long, over the limit of {MAX_LINE_CHARS:,} characters; "
                    "expected one record per line",
                    path=path,
                    line=lineno,
                )
            yield lineno, text


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKey(key)
        obj[key] = value
    return obj


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def iter_json_objects(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for every non-blank line; raise on anything but an object."""
    for lineno, text in _iter_lines(path):
        if not text.strip():
            continue
        try:
            obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except _DuplicateKey as exc:
            raise InputError(
                "key appears twice in one object; expected each key once", path=path, line=lineno,
                field=exc.key,
            ) from None
        except json.JSONDecodeError as exc:
            raise InputError(
                f"invalid JSON ({exc.msg} at column {exc.colno}); expected one JSON object per line",
                path=path,
                line=lineno,
            ) from None
        except (ValueError, RecursionError) as exc:  # e.g. a 5,000-digit integer, 100k nested lists
            raise InputError(
                f"JSON cannot be read ({type(exc).__name__}: {str(exc)[:100]}); "
                "expected one JSON object per line",
                path=path,
                line=lineno,
            ) from None
        if not isinstance(obj, dict):
            raise InputError(
                f"line holds a JSON {_json_type(obj)}; expected a JSON object", path=path, line=lineno
            )
        yield lineno, obj


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# --------------------------------------------------------------------------------------------------
# Field validation


def _valid_text(value: str, path: Path, line: int, field: str) -> str:
    """Reject strings that cannot be written back as UTF-8 (lone surrogates from ``\\ud800`` escapes)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            "string holds an unpaired surrogate escape; expected valid Unicode text",
            path=path, line=line, field=field,
        ) from None
    return value


def _get_str(obj: dict, key: str, path: Path, line: int, *, allow_empty: bool = False) -> str:
    if key not in obj:
        raise InputError("missing; expected a string", path=path, line=line, field=key)
    value = obj[key]
    if not isinstance(value, str):
        raise InputError(f"is a {_json_type(value)}; expected a string", path=path, line=line, field=key)
    if not allow_empty and not value.strip():
        raise InputError("is empty; expected a non-empty string", path=path, line=line, field=key)
    return _valid_text(value, path, line, key)


def _as_id(value: Any, path: Path, line: int, field: str) -> str:
    """Ids may be strings or integers (DPR and FlashRAG use numbers); both become strings."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(
            f"is a {_json_type(value)}; expected a string or an integer id", path=path, line=line,
            field=field,
        )
    text = str(value)
    if not text.strip():
        raise InputError("is empty; expected a non-empty id", path=path, line=line, field=field)
    return _valid_text(text, path, line, field)


def _answer_list(obj: dict, path: Path, line: int) -> list[str]:
    """The gold answers, from ``answers``, ``target`` or ``answer`` (first present wins)."""
    for key, allow_str in (("answers", False), ("target", True), ("answer", False)):
        if key not in obj:
            continue
        value = obj[key]
        if allow_str and isinstance(value, str):
            value = [value]
        expected = "a non-empty list of non-empty strings" + (" or one string" if allow_str else "")
        if not isinstance(value, list):
            raise InputError(
                f"is a {_json_type(value)}; expected {expected}", path=path, line=line, field=key
            )
        if not value:
            raise InputError(f"is an empty list; expected {expected}", path=path, line=line, field=key)
        for i, answer in enumerate(value):
            if not isinstance(answer, str):
                raise InputError(
                    f"item {i} is a {_json_type(answer)}; expected {expected}", path=path, line=line,
                    field=key,
                )
            if not answer.strip():
                raise InputError(
                    f"item {i} is an empty answer; expected {expected}", path=path, line=line, field=key
                )
            _valid_text(answer, path, line, key)
        return list(value)
    raise InputError(
        "missing; expected 'answers' (list of strings), 'target' or 'answer'",
        path=path, line=line, field="answers",
    )


def _gold_ids(obj: dict, path: Path, line: int) -> list[str]:
    key = "gold_passage_ids"
    if key not in obj:
        return []
    value = obj[key]
    if not isinstance(value, list):
        raise InputError(
            f"is a {_json_type(value)}; expected a list of passage ids", path=path, line=line, field=key
        )
    return [_as_id(v, path, line, key) for v in value]


# --------------------------------------------------------------------------------------------------
# Passages


def _passage_from_json(obj: dict, path: Path, line: int) -> Passage:
    if "id" not in obj:
        raise InputError("missing; expected a passage id", path=path, line=line, field="id")
    pid = _as_id(obj["id"], path, line, "id")
    if "text" not in obj and "contents" in obj:
        return _passage_from_flashrag(pid, obj, path, line)
    if "text" not in obj:
        raise InputError(
            "missing; expected 'text' (with 'title'), or FlashRAG's 'contents'",
            path=path, line=line, field="text",
        )
    title = _get_str(obj, "title", path, line, allow_empty=True)
    text = _get_str(obj, "text", path, line)
    section = obj.get("section")
    if section is not None:
        if not isinstance(section, str):
            raise InputError(
                f"is a {_json_type(section)}; expected a string or null", path=path, line=line,
                field="section",
            )
        _valid_text(section, path, line, "section")
    return Passage(id=pid, title=title, text=text, section=section)


def _passage_from_flashrag(pid: str, obj: dict, path: Path, line: int) -> Passage:
    """FlashRAG's ``contents`` is ``"Title"`` on the first line, then the passage text."""
    contents = _get_str(obj, "contents", path, line)
    head, sep, text = contents.partition("\n")
    if not sep or not text.strip():
        raise InputError(
            "has no text after the title line; expected a quoted title, a newline, then the text",
            path=path, line=line, field="contents",
        )
    title = head.strip()
    if len(title) >= 2 and title[0] == '"' and title[-1] == '"':
        title = title[1:-1]
    return Passage(id=pid, title=title, text=text)


def _read_passages_jsonl(path: Path) -> Iterator[tuple[int, Passage]]:
    for line, obj in iter_json_objects(path):
        yield line, _passage_from_json(obj, path, line)


def _read_passages_tsv(path: Path) -> Iterator[tuple[int, Passage]]:
    """DPR's ``psgs_w100.tsv``: read with the csv module so that quoted fields keep their tabs."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    # The lines keep their terminators, so that newlines inside quoted fields survive.
    lines = (text for _, text in _iter_lines(path))
    reader = csv.reader(lines, delimiter="\t", quotechar='"', strict=True)
    columns: dict[str, int] | None = None
    prev_line = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InputError(
                f"TSV cannot be parsed ({exc}); expected tab-separated fields with CSV quoting",
                path=path, line=reader.line_num,
            ) from None
        start, prev_line = prev_line + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if columns is None:
            header = [h.strip() for h in row]
            missing = [c for c in ("id", "text", "title") if c not in header]
            if missing:
                raise InputError(
                    f"header is {header!r}; expected a header naming id, text and title "
                    "(DPR psgs_w100.tsv)",
                    path=path, line=start, field=missing[0],
                )
            if len(set(header)) != len(header):
                raise InputError("header names a column twice", path=path, line=start)
            columns = {name: i for i, name in enumerate(header)}
            continue
        if len(row) != len(columns):
            raise InputError(
                f"row has {len(row)} fields; expected {len(columns)} like the header",
                path=path, line=start,
            )
        pid = _as_id(row[columns["id"]], path, start, "id")
        text = row[columns["text"]]
        if not text.strip():
            raise InputError("is empty; expected the passage text", path=path, line=start, field="text")
        yield start, Passage(id=pid, title=row[columns["title"]], text=text)


def _load_passages_with_lines(path: str | Path) -> list[tuple[int, Passage]]:
    path = Path(path)
    _check_file(path)
    suffix = path.suffix.lower()
    if suffix in _JSONL_SUFFIXES:
        rows = list(_read_passages_jsonl(path))
    elif suffix in _TSV_SUFFIXES:
        rows = list(_read_passages_tsv(path))
    else:
        raise InputError(
            f"unknown passage file type {path.suffix!r}; expected .jsonl, .json (one object per line) "
            "or .tsv (DPR)",
            path=path,
        )
    if not rows:
        raise InputError("file holds no passages; expected at least one", path=path)
    seen: dict[str, int] = {}
    for line, passage in rows:
        if passage.id in seen:
            raise InputError(
                f"duplicate passage id {passage.id!r} (first on line {seen[passage.id]}); expected "
                "unique ids",
                path=path, line=line, field="id",
            )
        seen[passage.id] = line
    return rows


def load_passages(path: str | Path) -> list[Passage]:
    """Load a passage file (jsonl in attnrag/ATLAS or FlashRAG form, or a DPR tsv), in file order."""
    return [p for _, p in _load_passages_with_lines(path)]


# --------------------------------------------------------------------------------------------------
# QA examples


def _load_qa_with_lines(path: str | Path) -> list[tuple[int, QAExample]]:
    path = Path(path)
    _check_file(path)
    rows: list[tuple[int, QAExample]] = []
    seen: dict[str, int] = {}
    for line, obj in iter_json_objects(path):
        question = _get_str(obj, "question", path, line)
        answers = _answer_list(obj, path, line)
        qid = _as_id(obj["id"], path, line, "id") if "id" in obj else f"{path.stem}-{line}"
        if qid in seen:
            raise InputError(
                f"duplicate question id {qid!r} (first on line {seen[qid]}); expected unique ids",
                path=path, line=line, field="id",
            )
        seen[qid] = line
        gold = _gold_ids(obj, path, line)
        rows.append((line, QAExample(id=qid, question=question, answers=answers, gold_passage_ids=gold)))
    if not rows:
        raise InputError("file holds no questions; expected at least one", path=path)
    return rows


def load_qa(path: str | Path) -> list[QAExample]:
    """Load a QA jsonl file (attnrag/ATLAS ``answers``, TriviaQA ``target`` or NQ-open ``answer``)."""
    return [ex for _, ex in _load_qa_with_lines(path)]


# --------------------------------------------------------------------------------------------------
# Corpus directories


def _find_passage_file(directory: Path) -> Path:
    jsonl = directory / "passages.jsonl"
    tsvs = sorted(p for p in directory.glob("*.tsv") if p.is_file())
    if jsonl.is_file():
        if tsvs:
            raise InputError(
                f"holds both passages.jsonl and {tsvs[0].name}; expected exactly one passage file",
                path=directory,
            )
        return jsonl
    if len(tsvs) == 1:
        return tsvs[0]
    if len(tsvs) > 1:
        names = ", ".join(p.name for p in tsvs)
        raise InputError(f"holds several .tsv files ({names}); expected exactly one", path=directory)
    raise InputError("no passages.jsonl or .tsv passage file; expected one", path=directory)


def load_corpus_dir(
    directory: str | Path, distractors: str | Path | None = None
) -> tuple[list[Passage], dict[str, list[QAExample]]]:
    """Load ``passages.jsonl`` (or one ``*.tsv``) and whichever of train/dev/test.jsonl exist.

    ``distractors`` is an extra passage file appended to the corpus (e.g. real Wikipedia passages
    that make retrieval harder); its ids must not collide with the corpus ids. Every gold passage id
    of every question must name a passage of the (combined) corpus, otherwise gold recall would be
    silently capped below 1.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError("not a directory; expected a corpus directory", path=directory)
    passage_file = _find_passage_file(directory)
    passages = [p for _, p in _load_passages_with_lines(passage_file)]
    ids = {p.id for p in passages}
    if distractors is not None:
        for line, passage in _load_passages_with_lines(distractors):
            if passage.id in ids:
                raise InputError(
                    f"distractor passage id {passage.id!r} is already a corpus id in {passage_file}; "
                    "expected ids distinct from the corpus",
                    path=distractors, line=line, field="id",
                )
            ids.add(passage.id)
            passages.append(passage)

    splits: dict[str, list[QAExample]] = {}
    for split in SPLITS:
        qa_file = directory / f"{split}.jsonl"
        if not qa_file.exists():
            continue
        rows = _load_qa_with_lines(qa_file)
        for line, example in rows:
            for pid in example.gold_passage_ids:
                if pid not in ids:
                    raise InputError(
                        f"gold passage id {pid!r} is not in the corpus ({passage_file.name}); "
                        "expected ids of corpus passages",
                        path=qa_file, line=line, field="gold_passage_ids",
                    )
        splits[split] = [ex for _, ex in rows]
    if not splits:
        raise InputError(
            "no train.jsonl, dev.jsonl or test.jsonl; expected at least one question file",
            path=directory,
        )
    return passages, splits


# --------------------------------------------------------------------------------------------------
# Writers (all atomic: a reader sees the old file or the new one)


def write_passages(path: str | Path, passages: Iterable[Passage]) -> int:
    """Write passages as attnrag jsonl (``id``, ``title``, ``text``, ``section`` when set)."""
    return write_jsonl(path, (p.to_dict() for p in passages))


def write_qa(path: str | Path, examples: Iterable[QAExample]) -> int:
    """Write QA examples as attnrag jsonl (``id``, ``question``, ``answers``, ``gold_passage_ids``)."""
    return write_jsonl(path, (ex.to_dict() for ex in examples))


def write_dpr_tsv(path: str | Path, passages: Sequence[Passage] | Iterable[Passage]) -> int:
    """Write passages as DPR ``psgs_w100.tsv`` (``id\\ttext\\ttitle``; ``section`` has no column)."""
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as fh:
        # newline='' semantics: the csv writer emits its own terminators; tabs/quotes get quoted.
        writer = csv.writer(fh, delimiter="\t", quotechar='"', lineterminator="\n")
        # QUOTE_MINIMAL does not quote a lone "\r", which readers then take for a line break.
        quote_all = csv.writer(fh, delimiter="\t", quotechar='"', lineterminator="\n",
                               quoting=csv.QUOTE_ALL)
        writer.writerow(["id", "text", "title"])
        for p in passages:
            row = [p.id, p.text, p.title]
            (quote_all if any("\r" in f for f in row) else writer).writerow(row)
            n += 1
    return n


def write_nq_open(path: str | Path, examples: Iterable[QAExample]) -> int:
    """Write QA examples in NQ-open form (``question``, ``answer`` list); ids and gold ids are dropped."""
    return write_jsonl(path, ({"question": ex.question, "answer": list(ex.answers)} for ex in examples))
