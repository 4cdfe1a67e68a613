#!/usr/bin/env bash
# Install worldmodels, its test dependencies and the [doom], [ray] and [figures] extras (so that
# the Take Cover, Ray backend and figure tests run) into the current Python.
# torch is pinned and installed first, so pip never resolves an unpinned torch to a
# multi-GB CUDA build. Override with TORCH_SPEC, e.g. TORCH_SPEC="torch==2.13.0+cu128".
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
"$PY" -m pip install --quiet --disable-pip-version-check "${TORCH_SPEC:-torch==2.13.0}"
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[test,doom,ray,figures]"
