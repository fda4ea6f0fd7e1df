"""Both readers implement the Reader protocol the trainer, teachers and evaluation rely on."""

from __future__ import annotations

import inspect

import pytest

from attnrag.reader.decoder import DecoderReader
from attnrag.reader.fid import FiDReader
from attnrag.reader.protocol import Reader

MEMBERS = [name for name, value in vars(Reader).items()
           if not name.startswith("_") and (callable(value) or isinstance(value, property))]


@pytest.mark.parametrize("cls", [DecoderReader, FiDReader])
@pytest.mark.parametrize("member", MEMBERS)
def test_reader_implements_the_protocol_member_with_its_signature(cls, member):
    """Every protocol method exists with the protocol's parameter names, order and defaults (a
    reader may add trailing optional parameters), and every property is a property."""
    ours, theirs = getattr(Reader, member), getattr(cls, member, None)
    assert theirs is not None, f"{cls.__name__} lacks {member}"
    if isinstance(ours, property):
        assert isinstance(theirs, property), f"{cls.__name__}.{member} must be a property"
        return
    want = list(inspect.signature(ours).parameters.values())
    have = list(inspect.signature(theirs).parameters.values())
    assert [p.name for p in have[: len(want)]] == [p.name for p in want], member
    assert [p.default for p in have[: len(want)]] == [p.default for p in want], member
    assert all(p.default is not inspect.Parameter.empty for p in have[len(want):]), member


def test_loaded_readers_are_instances_of_the_protocol(tmp_path):
    from helpers import save_tiny_reader

    from attnrag.reader.factory import load_reader

    reader = load_reader(save_tiny_reader(tmp_path / "reader"))
    assert isinstance(reader, Reader)
    assert not isinstance(str(tmp_path), Reader)
