#!/usr/bin/env bash
# Run the tests that touch other libraries' internals against the newest releases pyproject.toml's
# ranges allow (not the lock): a separate venv, torch==2.13.0 first (so no CUDA build is pulled), the
# rest upgraded eagerly. Not part of .ci/run: it is the early warning that a new release breaks
# attnrag, run before every stop (README, "When a new release breaks something").
#
#   usage: scripts/test_latest.sh [PYTHON]      (the Makefile's `make test-latest`)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
VENV=.venv-latest

test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[test,bench]'
"$VENV/bin/attnrag" models fetch >/dev/null
echo "test-latest: newest releases the ranges allow (differences from requirements.lock marked *):"
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import re
from pathlib import Path

locked = {}
for line in Path("requirements.lock").read_text().splitlines():
    if "==" in line and not line.startswith("#"):
        name, version = line.split("==", 1)
        locked[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
for name in ["torch", "transformers", "sentence-transformers", "tokenizers", "safetensors", "accelerate",
             "faiss-cpu", "bm25s", "PyStemmer", "numpy", "scipy", "typer", "gguf"]:
    try:
        version = md.version(name)
    except md.PackageNotFoundError:
        continue
    want = locked.get(re.sub(r"[-_.]+", "-", name).lower(), "?")
    mark = "" if version.split("+")[0] == want else f"  * lock has {want}"
    print(f"  {name} {version}{mark}")
PY
"$VENV/bin/python" -m pytest -q -rs tests/test_library_internals.py tests/test_lexical.py tests/test_architectures.py \
  tests/test_capture.py tests/test_fid.py tests/test_export.py tests/test_baseline_equality.py
