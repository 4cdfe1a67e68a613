#!/usr/bin/env bash
# The test command of the README: installs what it needs, then runs the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PY="${PYTHON:-python3}"
# Lint and type-check first (seconds), configured in pyproject.toml.
"$PY" -m ruff check worldmodels envs agents tests scripts
"$PY" -m mypy
export SDL_VIDEODRIVER="${SDL_VIDEODRIVER:-dummy}" SDL_AUDIODRIVER="${SDL_AUDIODRIVER:-dummy}"
exec "${PYTHON:-python3}" -m pytest "$@"
