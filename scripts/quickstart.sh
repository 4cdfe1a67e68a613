#!/usr/bin/env bash
# The README's main job: install, then train a World Models agent on CarRacing with the
# `laptop` preset (C trained only in M's dream) and report its score on 100 CarRacing-v3 test
# tracks.
# Rerunning resumes where it stopped. Pass extra pipeline options, e.g. --preset debug (a full
# preset instead of laptop, the default) or --preset laptop-real (C trained in the real env).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec worldmodels pipeline --run-dir "${RUN_DIR:-runs/laptop}" "$@"
