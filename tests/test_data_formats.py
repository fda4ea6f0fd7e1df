"""Loaders and writers of attnrag.data.formats: every bad input names its file, line and field."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attnrag.data.formats import (
    MAX_LINE_CHARS,
    load_corpus_dir,
    load_passages,
    load_qa,
    write_dpr_tsv,
    write_nq_open,
    write_passages,
    write_qa,
)
from attnrag.data.records import Passage, QAExample
from attnrag.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not available")

GOOD_QA = b'{"id": "q1", "question": "Who?", "answers": ["Ann"]}\n'
GOOD_PASSAGE = b'{"id": "p1", "title": "T", "text": "Some text."}\n'


def _file(tmp_path: Path, content: bytes, name: str = "f.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _jsonl(*objs: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def _expect(loader, path: Path, line: int | None, field: str | None, *words: str) -> InputError:
    with pytest.raises(InputError) as info:
        loader(path)
    err = info.value
    assert err.path == str(path)
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    for word in words:
        assert word in str(err), str(err)
    assert str(path) in str(err)
    return err


# --------------------------------------------------------------------------------------------------
# QA: each class of bad input


QA_ERRORS = [
    # (name, content, line, field, words that must appear in the message)
    ("invalid json", GOOD_QA + b'{"question": "x", \n', 2, None, "invalid JSON"),
    ("not an object", GOOD_QA + b'["Who?", ["Ann"]]\n', 2, None, "expected a JSON object"),
    ("string line", b'"just a string"\n', 1, None, "JSON string"),
    ("missing question", _jsonl({"answers": ["a"]}), 1, "question", "missing"),
    ("empty question", _jsonl({"question": "  ", "answers": ["a"]}), 1, "question", "empty"),
    ("question not str", _jsonl({"question": 7, "answers": ["a"]}), 1, "question", "number"),
    ("missing answers", _jsonl({"question": "q"}), 1, "answers", "missing"),
    ("answers empty list", _jsonl({"question": "q", "answers": []}), 1, "answers", "empty list"),
    ("empty answer", _jsonl({"question": "q", "answers": ["a", ""]}), 1, "answers", "empty answer"),
    ("blank answer", _jsonl({"question": "q", "answers": [" "]}), 1, "answers", "empty answer"),
    ("answer not str", _jsonl({"question": "q", "answers": [3]}), 1, "answers", "item 0"),
    ("answers is str", _jsonl({"question": "q", "answers": "a"}), 1, "answers", "string"),
    ("target empty", _jsonl({"question": "q", "target": ""}), 1, "target", "empty answer"),
    ("nq answer not list", _jsonl({"question": "q", "answer": 5}), 1, "answer", "number"),
    ("id float", _jsonl({"id": 1.5, "question": "q", "answers": ["a"]}), 1, "id", "integer id"),
    ("id bool", _jsonl({"id": True, "question": "q", "answers": ["a"]}), 1, "id", "boolean"),
    ("id empty", _jsonl({"id": "", "question": "q", "answers": ["a"]}), 1, "id", "empty"),
    ("duplicate id", GOOD_QA + b"\n" + GOOD_QA, 3, "id", "duplicate", "line 1"),
    ("duplicate int/str id", _jsonl({"id": 1, "question": "q", "answers": ["a"]},
                                    {"id": "1", "question": "q", "answers": ["a"]}), 2, "id", "duplicate"),
    ("gold not list", _jsonl({"question": "q", "answers": ["a"], "gold_passage_ids": "p1"}), 1,
     "gold_passage_ids", "list"),
    ("gold item bad", _jsonl({"question": "q", "answers": ["a"], "gold_passage_ids": [None]}), 1,
     "gold_passage_ids", "null"),
    ("duplicate key", b'{"question": "q", "answers": ["a"], "question": "r"}\n', 1, "question", "twice"),
    ("lone surrogate", b'{"question": "q\\ud800", "answers": ["a"]}\n', 1, "question", "surrogate"),
    ("non utf-8", GOOD_QA + b'{"id": "q2", "question": "caf\xe9", "answers": ["a"]}\n', 2, None, "UTF-8"),
    ("too long line", GOOD_QA + b'{"question": "' + b"x" * (MAX_LINE_CHARS + 5) + b'"}\n', 2, None,
     "over the limit"),
    ("deep nesting", GOOD_QA + b"[" * 100_000 + b"]" * 100_000 + b"\n", 2, None, "JSON"),
    ("huge integer", b'{"id": ' + b"9" * 5000 + b', "question": "q", "answers": ["a"]}\n', 1, None, "JSON"),
    ("empty file", b"", None, None, "no questions"),
    ("only blank lines", b"\n  \n\r\n", None, None, "no questions"),
]


@pytest.mark.parametrize(("content", "line", "field", "words"),
                         [pytest.param(c, ln, f, w, id=n) for n, c, ln, f, *w in QA_ERRORS])
def test_load_qa_rejects_bad_input(tmp_path, content, line, field, words):
    _expect(load_qa, _file(tmp_path, content), line, field, *words)


def test_too_long_line_reported_even_when_multibyte(tmp_path):
    # 1,000,001 three-byte characters: over the character limit, under the byte guard.
    content = GOOD_QA + b'{"question": "' + "€".encode() * (MAX_LINE_CHARS + 1) + b'"}\n'
    _expect(load_qa, _file(tmp_path, content), 2, None, "1,000,017 characters long")


def test_line_of_exactly_the_limit_loads(tmp_path):
    head, tail = '{"question": "', '", "answers": ["a"]}'
    line = head + "€" * (MAX_LINE_CHARS - len(head) - len(tail)) + tail
    assert len(line) == MAX_LINE_CHARS
    assert len(load_qa(_file(tmp_path, line.encode() + b"\r\n"))[0].question) > 999_000


def test_blank_lines_skipped_and_counted(tmp_path):
    content = GOOD_QA + b"\n   \n" + b'{"question": "q", "answers": []}\n'
    _expect(load_qa, _file(tmp_path, content), 4, "answers")
    path = _file(tmp_path, b"\n" + GOOD_QA + b"\n\n", "ok.jsonl")
    assert [ex.id for ex in load_qa(path)] == ["q1"]


def test_qa_answer_fields_and_defaults(tmp_path):
    path = _file(tmp_path, _jsonl(
        {"question": "a?", "answers": ["x", "y"], "gold_passage_ids": [3, "p4"]},
        {"question": "b?", "target": "z"},
        {"question": "c?", "target": ["t1", "t2"]},
        {"question": "d?", "answer": ["w"]},
        {"id": 17, "question": "e?", "answers": ["v"], "answer": ["ignored"], "extra": 1},
    ), "my-qa.jsonl")
    exs = load_qa(path)
    assert [e.id for e in exs] == ["my-qa-1", "my-qa-2", "my-qa-3", "my-qa-4", "17"]
    assert [e.answers for e in exs] == [["x", "y"], ["z"], ["t1", "t2"], ["w"], ["v"]]
    assert exs[0].gold_passage_ids == ["3", "p4"]
    assert exs[1].gold_passage_ids == []


def test_crlf_and_bom_are_accepted(tmp_path):
    path = _file(tmp_path, b"\xef\xbb\xbf" + GOOD_QA.replace(b"\n", b"\r\n") * 1)
    assert load_qa(path)[0].question == "Who?"


def test_missing_file_and_directory(tmp_path):
    _expect(load_qa, tmp_path / "nope.jsonl", None, None, "not found")
    _expect(load_passages, tmp_path, None, None, "expected a file")


# --------------------------------------------------------------------------------------------------
# Passages


PASSAGE_ERRORS = [
    ("missing id", _jsonl({"title": "t", "text": "x"}), 1, "id", "missing"),
    ("id list", _jsonl({"id": [1], "title": "t", "text": "x"}), 1, "id", "array"),
    ("missing text", _jsonl({"id": 1, "title": "t"}), 1, "text", "missing"),
    ("empty text", _jsonl({"id": 1, "title": "t", "text": " "}), 1, "text", "empty"),
    ("missing title", _jsonl({"id": 1, "text": "x"}), 1, "title", "missing"),
    ("title not str", _jsonl({"id": 1, "title": None, "text": "x"}), 1, "title", "null"),
    ("section not str", _jsonl({"id": 1, "title": "", "text": "x", "section": 2}), 1, "section", "number"),
    ("duplicate id", GOOD_PASSAGE + GOOD_PASSAGE, 2, "id", "duplicate"),
    ("flashrag no newline", _jsonl({"id": 0, "contents": '"Title" text'}), 1, "contents", "newline"),
    ("flashrag empty", _jsonl({"id": 0, "contents": ""}), 1, "contents", "empty"),
    ("invalid json", GOOD_PASSAGE + b"{]\n", 2, None, "invalid JSON"),
    ("non utf-8", GOOD_PASSAGE + b'\xff{"id": 2}\n', 2, None, "UTF-8"),
    ("empty file", b"\n", None, None, "no passages"),
]


@pytest.mark.parametrize(("content", "line", "field", "words"),
                         [pytest.param(c, ln, f, w, id=n) for n, c, ln, f, *w in PASSAGE_ERRORS])
def test_load_passages_rejects_bad_input(tmp_path, content, line, field, words):
    _expect(load_passages, _file(tmp_path, content), line, field, *words)


def test_passage_formats(tmp_path):
    ours = _file(tmp_path, _jsonl({"id": 7, "title": "", "text": "x", "section": "s", "more": 1}))
    assert load_passages(ours) == [Passage("7", "", "x", "s")]
    flash = _file(tmp_path, _jsonl({"id": 0, "contents": '"Evan Morris"\nEvan Morris was a lobbyist.'}),
                  "flash.jsonl")
    assert load_passages(flash) == [Passage("0", "Evan Morris", "Evan Morris was a lobbyist.")]
    json_ext = _file(tmp_path, GOOD_PASSAGE, "lines.json")
    assert load_passages(json_ext)[0].id == "p1"
    _expect(load_passages, _file(tmp_path, GOOD_PASSAGE, "p.csv"), None, None, "unknown passage file type")


DPR_FIXTURE = (
    "id\ttext\ttitle\n"
    '1\t"Aaron Aaron ( or ; ""Ahärôn"") is a prophet"\tAaron\n'
    "2\tPlain text, no quotes.\tSecond\n"
    '3\t"A field with a\ttab and a\nnewline"\tThird\n'
    "\n"
    "4\tLast line without newline\tFourth"
)


def test_dpr_tsv_fixture(tmp_path):
    path = _file(tmp_path, DPR_FIXTURE.encode(), "psgs_w100.tsv")
    ps = load_passages(path)
    assert [p.id for p in ps] == ["1", "2", "3", "4"]
    assert ps[0].text == 'Aaron Aaron ( or ; "Ahärôn") is a prophet'
    assert ps[2].text == "A field with a\ttab and a\nnewline"
    assert ps[3].title == "Fourth"


DPR_ERRORS = [
    ("bad header", "id\ttitle\tbody\n1\tx\ty\n", 1, "text", "header"),
    ("too few fields", "id\ttext\ttitle\n1\tx\ty\n2\tonly two\n", 3, None, "2 fields"),
    ("too many fields", "id\ttext\ttitle\n1\tx\ty\tz\n", 2, None, "4 fields"),
    ("empty id", "id\ttext\ttitle\n\tx\ty\n", 2, "id", "empty"),
    ("empty text", "id\ttext\ttitle\n1\t\ty\n", 2, "text", "empty"),
    ("duplicate id", "id\ttext\ttitle\n1\tx\ty\n1\tz\tw\n", 3, "id", "duplicate"),
    ("bad quoting", 'id\ttext\ttitle\n1\t"x"y\tz\n', 2, None, "TSV"),
    ("header only", "id\ttext\ttitle\n", None, None, "no passages"),
]


@pytest.mark.parametrize(("content", "line", "field", "words"),
                         [pytest.param(c, ln, f, w, id=n) for n, c, ln, f, *w in DPR_ERRORS])
def test_dpr_tsv_rejects_bad_input(tmp_path, content, line, field, words):
    _expect(load_passages, _file(tmp_path, content.encode(), "p.tsv"), line, field, *words)


def test_dpr_tsv_non_utf8_line(tmp_path):
    content = b"id\ttext\ttitle\n1\tok\tT\n2\tbad \xc3\x28 byte\tT\n"
    _expect(load_passages, _file(tmp_path, content, "p.tsv"), 3, None, "UTF-8")


# --------------------------------------------------------------------------------------------------
# Corpus directories


def _corpus(tmp_path: Path, passages: bytes = GOOD_PASSAGE, **splits: bytes) -> Path:
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "passages.jsonl").write_bytes(passages)
    for name, content in splits.items():
        (d / f"{name}.jsonl").write_bytes(content)
    return d


def test_corpus_dir_loads_present_splits(tmp_path):
    qa = _jsonl({"id": "a", "question": "q", "answers": ["x"], "gold_passage_ids": ["p1"]})
    passages, splits = load_corpus_dir(_corpus(tmp_path, dev=qa))
    assert [p.id for p in passages] == ["p1"]
    assert list(splits) == ["dev"]


def test_corpus_dir_gold_id_not_in_corpus(tmp_path):
    qa = GOOD_QA + _jsonl({"id": "b", "question": "q", "answers": ["x"], "gold_passage_ids": ["p1", "p9"]})
    d = _corpus(tmp_path, test=qa)
    with pytest.raises(InputError) as info:
        load_corpus_dir(d)
    err = info.value
    assert (err.path, err.line, err.field) == (str(d / "test.jsonl"), 2, "gold_passage_ids")
    assert "'p9'" in str(err)


def test_corpus_dir_distractors(tmp_path):
    d = _corpus(tmp_path, train=GOOD_QA)
    extra = _file(tmp_path, _jsonl({"id": "d1", "contents": '"D"\ntext'}), "distractors.jsonl")
    passages, _ = load_corpus_dir(d, distractors=extra)
    assert [p.id for p in passages] == ["p1", "d1"]
    clash = _file(tmp_path, _jsonl({"id": "d2", "title": "", "text": "x"},
                                   {"id": "p1", "title": "", "text": "y"}), "clash.jsonl")
    with pytest.raises(InputError) as info:
        load_corpus_dir(d, distractors=clash)
    assert (info.value.path, info.value.line, info.value.field) == (str(clash), 2, "id")


def test_corpus_dir_errors(tmp_path):
    with pytest.raises(InputError, match="not a directory"):
        load_corpus_dir(tmp_path / "missing")
    d = _corpus(tmp_path)
    with pytest.raises(InputError, match="at least one question file"):
        load_corpus_dir(d)
    (d / "passages.jsonl").unlink()
    (d / "train.jsonl").write_bytes(GOOD_QA)
    with pytest.raises(InputError, match="no passages.jsonl"):
        load_corpus_dir(d)
    (d / "a.tsv").write_text("id\ttext\ttitle\np1\tx\tT\n")
    assert load_corpus_dir(d)[0][0].id == "p1"
    (d / "b.tsv").write_text("id\ttext\ttitle\np1\tx\tT\n")
    with pytest.raises(InputError, match="several .tsv"):
        load_corpus_dir(d)
    (d / "b.tsv").unlink()
    (d / "passages.jsonl").write_bytes(GOOD_PASSAGE)
    with pytest.raises(InputError, match="both passages.jsonl"):
        load_corpus_dir(d)


def test_corpus_dir_empty_corpus(tmp_path):
    d = _corpus(tmp_path, passages=b"", train=GOOD_QA)
    with pytest.raises(InputError, match="no passages") as info:
        load_corpus_dir(d)
    assert info.value.path == str(d / "passages.jsonl")


# --------------------------------------------------------------------------------------------------
# Writers round-trip


TRICKY = ['plain', 'tab\there', 'quote " inside', '"quoted"', 'new\nline', 'carriage\rreturn',
          'crlf\r\nend', 'unicode é € 𝄞', ' lead and trail ', '\u2028sep']


def test_passages_round_trip(tmp_path):
    ps = [Passage(str(i), f"T{i} {t}", f"text {t}", "sec" if i % 2 else None) for i, t in enumerate(TRICKY)]
    write_passages(tmp_path / "p.jsonl", ps)
    assert load_passages(tmp_path / "p.jsonl") == ps
    write_dpr_tsv(tmp_path / "p.tsv", ps)
    back = load_passages(tmp_path / "p.tsv")
    assert back == [Passage(p.id, p.title, p.text) for p in ps]  # DPR has no section column


def test_qa_round_trip(tmp_path):
    exs = [QAExample(f"q{i}", f"question {t}?", [t, "other"], [str(i)]) for i, t in enumerate(TRICKY)]
    write_qa(tmp_path / "qa.jsonl", exs)
    assert load_qa(tmp_path / "qa.jsonl") == exs
    write_nq_open(tmp_path / "nq.jsonl", exs)
    back = load_qa(tmp_path / "nq.jsonl")
    assert [(e.question, e.answers) for e in back] == [(e.question, e.answers) for e in exs]
    assert [e.id for e in back] == [f"nq-{i + 1}" for i in range(len(exs))]
    assert all(e.gold_passage_ids == [] for e in back)
    assert set(json.loads((tmp_path / "nq.jsonl").read_text().splitlines()[0])) == {"question", "answer"}


# --------------------------------------------------------------------------------------------------
# The real public files


@needs_shared
def test_real_dpr_sample():
    ps = load_passages(SHARED / "dpr-sample" / "psgs_w100.sample.tsv")
    assert len(ps) == 751
    assert ps[0].title == "Erie Canal"


@needs_shared
def test_real_flashrag_sample():
    ps = load_passages(SHARED / "wiki-sample" / "flashrag-wiki18-100w-sample.jsonl")
    assert len(ps) == 1000
    assert ps[0].title == "Evan Morris"
    assert ps[0].text.startswith("Evan Morris Evan L. Morris")


@needs_shared
def test_real_nq_open():
    exs = load_qa(SHARED / "nq-open" / "NQ-open.dev.jsonl")
    assert len(exs) == 3610
    assert exs[0].answers == ["14 December 1972 UTC", "December 1972"]
    assert exs[0].id == "NQ-open.dev-1"


@needs_shared
def test_real_squad_open_dev_with_distractors():
    passages, splits = load_corpus_dir(
        SHARED / "squad-open-dev", distractors=SHARED / "wiki-sample" / "flashrag-wiki18-100w-sample.jsonl"
    )
    assert len(passages) == 1023 + 1000
    assert {k: len(v) for k, v in splits.items()} == {"train": 3725, "dev": 340, "test": 1332}


@needs_shared
def test_real_nq_oracle_dev():
    passages, splits = load_corpus_dir(SHARED / "nq-oracle-dev")
    assert len(passages) == 1312
    assert sum(map(len, splits.values())) == 796 + 132 + 399


# --------------------------------------------------------------------------------------------------
# Property: arbitrary input either loads or raises InputError, never anything else


_json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
_json_values = st.recursive(_json_scalars, lambda c: st.lists(c, max_size=3)
                            | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
_keys = st.sampled_from(["id", "question", "answers", "answer", "target", "gold_passage_ids", "title",
                         "text", "section", "contents"])
_records = st.dictionaries(_keys, _json_values | st.lists(st.text(max_size=6), max_size=3), max_size=6)
_lines = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(lambda s: s.encode("utf-8", "surrogatepass")),
    _records.map(lambda r: json.dumps(r).encode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_lines, max_size=5), suffix=st.sampled_from([".jsonl", ".tsv"]))
def test_loaders_never_crash(lines, suffix):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"input{suffix}"
        path.write_bytes(b"\n".join(lines))
        for loader in (load_qa, load_passages):
            try:
                out = loader(path)
            except InputError as err:
                assert err.path == str(path)
            else:
                assert out, "a successful load is never empty"
