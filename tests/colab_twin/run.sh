#!/usr/bin/env bash
# The Colab twin: every notebook, in smoke mode, through the setup cell's Colab branch, in Colab's package stack.
#
#   bash tests/colab_twin/run.sh            # build the twin (about 2 min, 5.7 GB), run all notebooks, clean up
#   COLAB_TWIN_DIR=/tmp/twin bash tests/colab_twin/run.sh [--only 04 05]   # keep and reuse the twin's venv there
#
# 1. A fresh virtual environment with Python 3.13 and Colab's versions of what the course touches
#    (colab-base.txt; every other package at Colab's version too where pip offers it: colab-constraints.txt).
# 2. google.colab importable as a fake, empty package that the kernel imports at start (as Colab's does), with
#    a fake google.colab.drive.mount that links /content/drive to a folder surviving from runtime to runtime.
# 3. The checkout (with uncommitted changes) snapshotted into a local git repository: the setup cell clones it
#    instead of the not-yet-published GitHub address.
# 4. drive.py: each notebook from a fresh runtime, its setup cell run for real, then checked (see drive.py).
# Differences from a real Colab runtime are listed in docs/COLAB.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

find_python() {
    if [ -n "${COLAB_TWIN_PYTHON:-}" ]; then echo "$COLAB_TWIN_PYTHON"; return; fi
    if command -v python3.13 >/dev/null 2>&1 && python3.13 -c "" 2>/dev/null; then command -v python3.13; return; fi
    local root; root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
    for p in "$root"/versions/3.13*/bin/python3.13; do [ -x "$p" ] && { echo "$p"; return; }; done
    return 1
}
py="$(find_python)" || { echo "colab twin: no Python 3.13 found (set COLAB_TWIN_PYTHON=/path/to/python3.13)" >&2; exit 4; }

if [ -n "${COLAB_TWIN_DIR:-}" ]; then twin="$COLAB_TWIN_DIR"; keep=1; else twin="$(mktemp -d -t colab-twin-XXXX)"; keep=0; fi
mkdir -p "$twin"
[ "$keep" = 1 ] || trap 'rm -rf "$twin"' EXIT
venv="$twin/venv"
stamp="$(cat "$here/colab-base.txt" "$here/colab-constraints.txt" | sha256sum | cut -c1-16)"
if [ ! -f "$venv/.twin-$stamp" ]; then
    rm -rf "$venv"
    start=$(date +%s)
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$here/colab-constraints.txt" \
        -r "$here/colab-base.txt" 2>&1 | grep -v "^WARNING: Location 'file:///opt/" || true
    "$venv/bin/python" -c "import torch, torchvision, numpy, ipywidgets" \
        || { echo "colab twin: the package install failed" >&2; exit 3; }
    "$venv/bin/python" -m pip list --format=json --disable-pip-version-check | "$venv/bin/python" -c \
        "import json, sys; print(json.dumps({d['name'].lower().replace('_', '-'): d['version'] for d in json.load(sys.stdin)}))" \
        > "$venv/.baseline.json"
    touch "$venv/.twin-$stamp"
    echo "colab twin: environment built in $(( $(date +%s) - start )) s with $("$venv/bin/python" --version)"
fi

# The fake google.colab: a namespace package 'google' (so google.protobuf & co. still import) holding 'colab'.
fake="$twin/fake"
mkdir -p "$fake/google/colab" "$twin/ipython/profile_default/startup"
cat > "$fake/google/colab/__init__.py" <<'PY'
"""A stand-in for Colab's google.colab package: its presence is what the course's setup cell checks."""
PY
cat > "$fake/google/colab/drive.py" <<'PY'
"""A stand-in for google.colab.drive: mount() links the mount point to a folder that outlives the runtime."""
import os


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    store = os.environ["COLAB_TWIN_GDRIVE"]
    os.makedirs(os.path.join(store, "MyDrive"), exist_ok=True)
    if not os.path.islink(mountpoint):
        os.makedirs(os.path.dirname(mountpoint), exist_ok=True)
        os.symlink(store, mountpoint)
    print(f"Mounted at {mountpoint}")
PY
cat > "$twin/ipython/profile_default/startup/00-google-colab.py" <<PY
import sys
sys.path.append("$fake")
import google.colab  # Colab's kernel imports it at start
PY

# Snapshot the checkout as branch main of a local repository: what a commit of everything would hold (changes
# and new files git does not ignore), through a throwaway index, so the checkout's own index is not touched.
origin="$twin/origin.git"
rm -rf "$origin" && git init -q --bare "$origin"
index="$twin/snapshot.index"
rm -f "$index"
(cd "$repo" && GIT_INDEX_FILE="$index" git read-tree HEAD && GIT_INDEX_FILE="$index" git add -A \
    && tree="$(GIT_INDEX_FILE="$index" git write-tree)" \
    && git push -q "$origin" "$(git commit-tree "$tree" -p HEAD -m "colab twin snapshot"):refs/heads/main")

cd "$twin"
rc=0
"$venv/bin/python" "$here/drive.py" --repo "$repo" --origin "file://$origin" --twin "$twin" --baseline "$venv/.baseline.json" "$@" || rc=$?

# The model tests on Colab's stack too (its huggingface_hub, timm, torch): smp's offline weight loading included.
# pytest (Colab ships 8.4.2) and smp are added for this step only, then removed again.
echo "colab twin: model and pretrained-weights tests on Colab's stack"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -c "$here/colab-constraints.txt" pytest \
    "$(cd "$repo" && "$venv/bin/python" -c 'import sys; sys.path.insert(0, "."); from helpers.course import colab; print(*colab.extra_requirements("."))')" \
    2>&1 | grep -v "^WARNING: Location 'file:///opt/" || true
(cd "$repo" && env -u SKINSEG_HOME SKINSEG_SMOKE=1 "$venv/bin/python" -m pytest -q -o addopts="" -p no:cacheprovider \
    tests/test_pretrained_offline.py tests/test_models.py) || rc=1
"$venv/bin/python" -c "import json, sys; sys.path.insert(0, '$here'); import drive
drive.restore(sys.executable, json.load(open('$venv/.baseline.json')))"  # back to Colab's stack as shipped
exit "$rc"
