#!/usr/bin/env bash
# The test suite (what CI runs): set up, then pytest. Extra arguments go to pytest,
# e.g. scripts/test.sh -m "not slow" for the quick subset.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --fashion-mnist --browser
exec .venv/bin/python -m pytest "$@"
