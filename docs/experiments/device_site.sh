# Sourced by the device scripts (gpu_pipeline.sh, d20_gpu.sh): on a lent GPU machine, unpack
# .whl/site.zip (docs/experiments/make_site_zip.sh) to /tmp/site once, install this checkout
# there without dependencies, and put /tmp/site on PYTHONPATH. Needs O (the output folder).
# SITE=0 skips it (a local dry run).
if [ "${SITE:-1}" = 1 ] && [ -f .whl/site.zip ] && [ ! -f /tmp/site/.unpacked ]; then
  python3 -m zipfile -e .whl/site.zip /tmp/site || exit 1
  chmod +x /tmp/site/vizdoom/vizdoom 2>/dev/null; touch /tmp/site/.unpacked
  python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$O/pip.log" 2>&1 || { cat "$O/pip.log"; exit 1; }
fi
[ "${SITE:-1}" = 1 ] && [ -f /tmp/site/.unpacked ] && export PYTHONPATH=/tmp/site
