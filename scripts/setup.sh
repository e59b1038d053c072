#!/usr/bin/env bash
# Make .venv hold exactly requirements.lock plus gankit (editable). Re-running is a no-op
# until requirements.lock or pyproject.toml change. With --fashion-mnist it also makes sure
# Fashion-MNIST is on disk (Debian's package when apt is usable; otherwise gankit downloads
# it with checksums on first use).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "setup: gankit needs Python 3.10 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

stamp=.venv/.setup-stamp
wanted=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    echo "setup: installing pinned dependencies into .venv (first run takes a minute or two)" >&2
    "$python" -m venv .venv
    .venv/bin/pip install -qq --disable-pip-version-check -r requirements.lock
    .venv/bin/pip install -qq --disable-pip-version-check --no-deps -e .
    echo "$wanted" > "$stamp"
fi

if [ "${1:-}" = "--fashion-mnist" ] && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)" >&2
        { apt-get install -y -qq dataset-fashion-mnist || { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; }; } >/dev/null \
            || echo "setup: apt could not install dataset-fashion-mnist; gankit will download Fashion-MNIST instead" >&2
    else
        echo "setup: apt not usable here; gankit will download Fashion-MNIST on first use" >&2
    fi
fi
