"""RunDir (attnrag/run.py) owns every path of a run directory: no other module joins a run sub-path
by a string or by one of run.py's name constants. A new hand-joined path fails here, naming the line."""

from __future__ import annotations

import re
from pathlib import Path

import attnrag

SRC = Path(attnrag.__file__).parent
RUN_FILES = ("metrics.jsonl", "run.json", "checkpoint.pt", "teacher_cache.pt", "first_stage.json")
RUN_PARTS = ("reader", "retriever", "base_index")
NAMES = ("CONFIG", "MANIFEST", "METRICS", "CHECKPOINT", "TEACHER_CACHE", "FIRST_STAGE", "CHECKPOINT_NAME",
         "RUN_MANIFEST", "TEACHER_CACHE_NAME")
HAND_JOIN = re.compile(
    r'"(?:' + "|".join(map(re.escape, RUN_FILES)) + r')"'  # a run file's name anywhere
    + r'|/\s*"(?:' + "|".join(RUN_PARTS) + r')"'  # a run part joined by hand
    + r'|/\s*(?:' + "|".join(NAMES) + r')\b')  # a name constant joined by hand
#: (file, what the match is): the same names in directories that are not runs
ALLOWED = {
    ("retrieval/sharded.py", "/ MANIFEST"),  # the sharded index's own shards.json, not a run's run.json
}


def test_no_module_but_run_py_joins_a_run_path():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "run.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in HAND_JOIN.finditer(line):
                text = re.sub(r"\s+", " ", match.group(0))
                if (rel, text) not in ALLOWED:
                    found.append(f"{rel}:{number}: {line.strip()}")
    assert not found, "use attnrag.run.RunDir for run paths:\n" + "\n".join(found)


def test_the_pattern_catches_a_hand_join():
    for bad in ('run / "metrics.jsonl"', 'Path(run) / "reader"', "out / TEACHER_CACHE", 'name = "first_stage.json"'):
        assert HAND_JOIN.search(bad), bad
    assert not HAND_JOIN.search("RunDir(run).metrics_path")
