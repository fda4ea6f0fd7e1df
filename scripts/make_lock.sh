#!/usr/bin/env bash
# Write requirements.lock: the exact versions of every package `make setup` installs, resolved from
# the supported ranges in pyproject.toml in a clean venv, and written only after the whole test suite
# passes in that venv. `make setup` installs the lock as constraints, so a fresh clone gets the
# versions that passed.
#
#   usage: scripts/make_lock.sh [PYTHON]        (the Makefile's `make lock`)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-python3}
VENV=.venv-lock
LOCK=requirements.lock

rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet torch==2.13.0
"$VENV/bin/python" -m pip install --quiet -e '.[test,bench]'
"$VENV/bin/attnrag" models fetch
echo "lock: running the test suite in $VENV"
"$VENV/bin/python" -m pytest -q -rs

tmp=$(mktemp)
{
  echo "# The versions \`make test\` passed with, resolved from pyproject.toml's ranges by \`make lock\`"
  echo "# ($(date -u +%Y-%m-%d), $("$VENV/bin/python" --version), $(uname -m)). \`make setup\` installs them as constraints."
  echo "# Regenerate with \`make lock\` after changing a range; \`make test-latest\` checks the newest releases."
  # torch: the CPU build is installed first by name, so the lock names the release, not its +cpu tag
  "$VENV/bin/python" -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]+)\+.*/\1/' | grep -v '^attnrag' | sort -f
} > "$tmp"
mv "$tmp" "$LOCK"
echo "lock: wrote $LOCK ($(grep -vc '^#' "$LOCK") packages)"
rm -rf "$VENV"
