#!/bin/bash
# .whl/site.zip for docs/experiments/gpu_pipeline.sh: the Python 3.12 packages of our core
# install that the lent GPU machine lacks, unpacked and zipped into one file (the working
# tree that travels is limited to 64 MiB, the repository itself is ~28 MB).
#   WORLD=doom: gymnasium, farama-notifications, cma, vizdoom 1.3.2 without freedoom1.wad and
#               the other scenarios (Take Cover uses freedoom2.wad): ~29 MB
#   WORLD=carracing: gymnasium, farama-notifications, cma, Box2D, pygame-ce: ~17 MB
# Then (once): echo /.whl/ >> .git/info/exclude, and carry ".whl" in the device call.
set -e
WORLD=${WORLD:-doom}; cd "$(git rev-parse --show-toplevel)"
W=$(mktemp -d); S=$(mktemp -d)
pkgs="gymnasium==1.4.0 Farama-Notifications==0.0.6 cma==4.5.0"
[ "$WORLD" = doom ] && pkgs="$pkgs vizdoom==1.3.2" || pkgs="$pkgs Box2D==2.3.10 pygame-ce==2.5.8"
for p in $pkgs; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$W" "$p"
done
(cd "$S" && for w in "$W"/*.whl; do python3 -m zipfile -e "$w" .; done
 rm -f vizdoom/freedoom1.wad
 [ -d vizdoom/scenarios ] && find vizdoom/scenarios -type f ! -name 'take_cover*' -delete; true)
mkdir -p .whl; rm -f .whl/site.zip; (cd "$S" && zip -q -9 -r "$OLDPWD/.whl/site.zip" .)
rm -rf "$W" "$S"; ls -la .whl/site.zip
