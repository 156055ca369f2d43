#!/usr/bin/env bash
# The GPU check, for a machine with a GPU that reaches no package registry (under 5 minutes on one GPU):
# a pool of 4 ResNet-18 models, the template scored at N = 4 through the sandbox on the GPU, the hostile
# network and snoop files still rejected there; prints img/s and the sandbox's device line. Without a GPU
# it says "no GPU found" and runs the CPU variant. Uses the torch already installed (python3, or $PYTHON);
# what the kit needs besides comes from benchmarks/gpu_wheels/ (`make gpu-wheels`, on a machine that
# reaches a registry), which travels with the working tree: hydra-core, omegaconf, antlr4 into a venv
# chained to that python's site-packages, and bubblewrap's Debian package, unpacked, when none is installed
# (or GPU_CHECK_UNPACKED_BWRAP=1).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WHEELS=$REPO/benchmarks/gpu_wheels
PY=${PYTHON:-python3}
WORK=${GPU_CHECK_DIR:-/tmp/gpu-check}
mkdir -p "$WORK"

if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "error: $PY has no torch: run with PYTHON=/path/to/the/python/that/has/torch" >&2
    exit 2
fi
if (cd / && "$PY" -c "import hydra, omegaconf, challenge") 2>/dev/null && [ -z "${GPU_CHECK_FRESH:-}" ]; then
    echo "python: $PY already has the kit and its dependencies"
else
    [ -d "$WHEELS/wheels" ] || { echo "error: no $WHEELS/wheels: run \`make gpu-wheels\` on a machine that reaches a package registry" >&2; exit 2; }
    VENV=$WORK/venv
    rm -rf "$VENV"
    if "$PY" -m venv --system-site-packages "$VENV" 2>/dev/null; then
        PIP=("$VENV/bin/python" -m pip)
    else  # no ensurepip for this python (Debian without python3-venv): its own pip installs into the venv
        rm -rf "$VENV"
        "$PY" -m venv --system-site-packages --without-pip "$VENV"
        PIP=("$PY" -m pip)
    fi
    SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    # The venv sees the packages of $PY even when $PY is itself a venv (--system-site-packages would skip those).
    "$PY" -c "import site, sys; print('\n'.join(p for p in site.getsitepackages() + [site.getusersitepackages()] if p in sys.path))" > "$SITE/gpu-check-base.pth"
    "${PIP[@]}" install --quiet --no-index --no-deps --target "$SITE" "$WHEELS"/wheels/*.whl
    if "${PIP[@]}" install --quiet --no-index --no-deps --no-build-isolation --target "$SITE" "$REPO" >/dev/null 2>&1; then
        KIT="the kit installed from $REPO (--no-deps)"
    else
        echo "$REPO" > "$SITE/gpu-check-kit.pth"
        KIT="the kit from $REPO by a .pth (no setuptools here to build it)"
    fi
    PY=$VENV/bin/python
    echo "python: $PY, a venv over $("$VENV/bin/python" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))') (its torch), with $(ls "$WHEELS/wheels" | sed 's/-py3.*//' | tr '\n' ' ')from $WHEELS/wheels and $KIT"
fi

if ! command -v bwrap >/dev/null || [ -n "${GPU_CHECK_UNPACKED_BWRAP:-}" ]; then
    BW=$WHEELS/root/usr/bin/bwrap
    [ -x "$BW" ] || { echo "error: no bubblewrap installed and no $BW: run \`make gpu-wheels\`" >&2; exit 2; }
    mkdir -p "$WORK/bin"
    if ldd "$BW" | grep -q "not found"; then  # its libraries from the unpacked packages, for bwrap alone (not in the child's environment)
        LOADER=$(ldd "$BW" | awk '/ld-linux/ {print $1}')
        printf '#!/bin/sh\nexec %s --library-path %s %s "$@"\n' "$LOADER" "$WHEELS/root/lib/x86_64-linux-gnu:$WHEELS/root/usr/lib/x86_64-linux-gnu" "$BW" > "$WORK/bin/bwrap"
        chmod +x "$WORK/bin/bwrap"
    else
        ln -sf "$BW" "$WORK/bin/bwrap"
    fi
    export PATH=$WORK/bin:$PATH
    echo "bubblewrap: the unpacked $("$WORK/bin/bwrap" --version) from $WHEELS/root"
else
    echo "bubblewrap: $(command -v bwrap) ($(bwrap --version))"
fi

cd "$WORK"  # nothing of the check lands in the checkout
exec timeout 300 env -u CHALLENGE_CACHE_DIR "$PY" "$REPO/benchmarks/gpu_check.py"
