#!/usr/bin/env bash
# Make .venv hold exactly requirements.lock plus gankit (editable). Re-running is a no-op
# until requirements.lock or pyproject.toml change. With --fashion-mnist it also makes sure
# Fashion-MNIST is on disk (Debian's package when apt is usable; otherwise gankit downloads
# it with checksums on first use). With --browser it makes sure headless Chromium and
# chromedriver are there for the report's browser test (Debian's chromium, chromium-driver).
set -euo pipefail
cd "$(dirname "$0")/.."

fashion_mnist=false browser=false
for flag in "$@"; do
    case "$flag" in
        --fashion-mnist) fashion_mnist=true ;;
        --browser) browser=true ;;
        *) echo "setup: unknown option $flag (known: --fashion-mnist, --browser)" >&2; exit 1 ;;
    esac
done

apt_usable() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; }
apt_install() {  # quietly; refresh the package lists once when a package is not found
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq "$@" || { apt-get update -qq && apt-get install -y -qq "$@"; }; } >/dev/null
}

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

if $fashion_mnist && [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    if apt_usable; then
        echo "setup: installing Fashion-MNIST (Debian package dataset-fashion-mnist)" >&2
        apt_install dataset-fashion-mnist || echo "setup: apt could not install dataset-fashion-mnist; gankit will download Fashion-MNIST instead" >&2
    else
        echo "setup: apt not usable here; gankit will download Fashion-MNIST on first use" >&2
    fi
fi

if $browser && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
    if apt_usable; then
        echo "setup: installing headless Chromium for the report's browser test (Debian packages chromium, chromium-driver)" >&2
        apt_install chromium chromium-driver || echo "setup: apt could not install chromium, chromium-driver; the browser test is skipped (on CI it fails)" >&2
    else
        echo "setup: apt not usable here; install chromium and chromedriver, or the browser test is skipped (on CI it fails)" >&2
    fi
fi
