#!/usr/bin/env bash
# GPU check (issue 19, item 4): one prepared script for a lent GPU machine, run from the repository root.
#
#   bash benchmarks/gpu_check.sh --prepare     # HERE, once: copy the real data and the missing wheels into
#                                               # .device-data/ (git-ignored), print the device call to make
#   bash benchmarks/gpu_check.sh               # ON THE GPU MACHINE (carry .device-data); a dry run without CUDA
#   bash benchmarks/gpu_check.sh --dry-run     # the CPU path on purpose: smoke versions of every step
#
# Steps, each under its own `timeout` inside one overall budget (default 540 s = 9 min), each failure reported
# without stopping the others:
#   setup       find the Python that holds torch; install the carried wheels (--no-index, into a temp folder)
#               for what it lacks (the device machine reaches no package registry, so `pip install -e .` fails)
#   env         GPU name, torch / CUDA / cuDNN versions, bf16 support; "DRY RUN: no CUDA" when there is none
#   data        the carried ISIC folder (train / val / holdout): present, with how many pairs
#   tests       GPU: the CUDA-only tests (tests/test_gpu_check.py) and the device-sensitive test files, on CUDA;
#               dry run: the CUDA-only file (its tests skip) and a collection of the others
#   nb04_real   notebook 04 in the gpu profile on the carried real data (dry run: smoke profile)
#   throughput  benchmarks/throughput.py on CUDA, 256 px, batch 16, bf16 + channels_last, with --precisions
#   nb04_synth  notebook 04 in the gpu profile on the synthetic set (the convention of helpers/course/profiles.py's
#               MEASURED_SECONDS), only if the budget still has the time (dry run: smoke profile)
# Then one JSON block between GPU_CHECK_JSON_BEGIN / GPU_CHECK_JSON_END, a human summary, and, when $OUT is
# set, $OUT/gpu_check.json, $OUT/gpu_check.log and the executed notebook and history files.
# The holdout split is carried only so the split layout (and so the training set) is the one the README's
# real-data runs used; nothing here trains, tunes or scores on it. benchmarks/README.md, "GPU check", has more.
set -u -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
T0=$(date +%s)

BUDGET=540
MODE=auto
PREPARE=0
DATA="$REPO/.device-data/isic-real"
WHEELS="$REPO/.device-data/wheels"
SHARED_DATA="$REPO/../shared/data/isic-real"
PY="${PYTHON:-python3}"
KEEP_WORK=0

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF
Options:
  --prepare        copy $SHARED_DATA to .device-data/isic-real and download the wheels the device
                   machine lacks to .device-data/wheels (needs PyPI: run it on the development machine)
  --dry-run        take the CPU path even where CUDA is available
  --budget S       overall time limit in seconds (default $BUDGET)
  --data DIR       the real ISIC folder (default .device-data/isic-real)
  --python PY      the Python to use (default \$PYTHON, else python3: on the device machine the one with torch)
  --work DIR       working folder (default: a new /tmp/gpu_check.XXXXXX, removed at the end unless --keep)
  --keep           keep the working folder
EOF
}

WORK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --prepare) PREPARE=1 ;;
        --dry-run) MODE=dry ;;
        --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
        --data) DATA="${2:?--data needs a folder}"; shift ;;
        --python) PY="${2:?--python needs an interpreter}"; shift ;;
        --work) WORK="${2:?--work needs a folder}"; shift ;;
        --keep) KEEP_WORK=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check: --budget must be whole seconds, got '$BUDGET'" >&2; exit 2 ;; esac
case "$DATA" in /*) ;; *) DATA="$PWD/$DATA" ;; esac

# Wheels for what the device image lacks (its package list: /work/.library/device/KINDS.md), pinned to the
# versions `pip install -e ".[dev]"` resolved on the development machine, for CPython 3.12 on x86-64 (the
# device's python3). The helpers need smp and albumentations; notebooks need nbclient + ipykernel; pytest and
# everything else (torch, numpy, pandas, opencv, timm, huggingface_hub, ...) are on the image already.
# typing-extensions is carried because pydantic 2.14 needs >= 4.16. Not carried: jupyterlab, nbval (the tests
# run with -o addopts=), isic-challenge-scoring, ipywidgets, debugpy (optional to ipykernel).
WHEEL_PINS="segmentation-models-pytorch==0.6.0 albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2
simsimd==6.5.16 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
typing-extensions==4.16.0 nbclient==0.11.0 nbformat==5.11.1 fastjsonschema==2.22.3 jsonschema==4.26.0
jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 jupyter-core==5.9.1
platformdirs==4.14.9 traitlets==5.16.1 jupyter-client==8.10.0 pyzmq==27.3.0 tornado==6.6.1 ipykernel==7.4.0
comm==0.2.3 nest-asyncio2==1.7.4 matplotlib-inline==0.2.2 ipython==9.19.1 ipython-pygments-lexers==1.1.1
jedi==0.20.1 parso==0.8.7 pexpect==4.9.0 ptyprocess==0.7.0 prompt-toolkit==3.0.53 wcwidth==0.9.5
stack-data==0.6.3 executing==2.3.0 asttokens==3.0.2 pure-eval==0.2.4"
# What the steps import; setup installs the wheels when one of these is missing.
NEEDED_MODULES="torch segmentation_models_pytorch albumentations nbclient nbformat ipykernel jupyter_client pytest"
# Test files whose code paths change when CUDA is present (fit/predict pick the GPU, amp and channels_last
# resolve for it, torchrun picks NCCL); with the CUDA-only tests of tests/test_gpu_check.py.
DEVICE_TESTS="tests/test_training.py tests/test_predict.py tests/test_distributed.py
tests/test_throughput_precisions.py tests/test_runtime.py tests/test_profiles.py"
CUDA_TESTS="tests/test_gpu_check.py"

# ------------------------------------------------------------------------------------------------ --prepare
if [ "$PREPARE" = 1 ]; then
    set -e
    if [ ! -d "$SHARED_DATA/train" ]; then
        echo "gpu_check --prepare: $SHARED_DATA/train not found: the real ISIC folder lies beside the checkout" >&2
        exit 1
    fi
    mkdir -p "$REPO/.device-data"
    rm -rf "$DATA.tmp" && cp -r "$SHARED_DATA" "$DATA.tmp" && rm -rf "$DATA" && mv "$DATA.tmp" "$DATA"
    echo "copied $SHARED_DATA -> $DATA ($(du -sh "$DATA" | cut -f1))"
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    # shellcheck disable=SC2086
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$WHEELS" $WHEEL_PINS 2>&1 \
        | grep -v "^WARNING: Location" || true
    n_pins=$(echo $WHEEL_PINS | wc -w); n_whl=$(ls "$WHEELS"/*.whl | wc -l)
    echo "downloaded $n_whl of $n_pins wheels -> $WHEELS ($(du -sh "$WHEELS" | cut -f1))"
    [ "$n_whl" = "$n_pins" ] || { echo "gpu_check --prepare: expected $n_pins wheels" >&2; exit 1; }
    tree_kib=$( (git ls-files -z; git ls-files -z --others --exclude-standard) | sort -zu \
        | xargs -0 du -bc 2>/dev/null | awk '/\ttotal$/ {s += $1} END {print int(s / 1024)}')
    carry_kib=$(du -sk "$REPO/.device-data" | cut -f1)
    echo "what travels: working tree $((tree_kib / 1024)) MiB + .device-data $((carry_kib / 1024)) MiB" \
         "= $(((tree_kib + carry_kib) / 1024)) MiB of the 64 MiB limit"
    [ $((tree_kib + carry_kib)) -lt $((64 * 1024)) ] || echo "WARNING: over 64 MiB: the device call will refuse it"
    echo
    echo "Now the device call (one call; about 9 min of the session's 15 min of device time):"
    echo "  run(command=\"bash benchmarks/gpu_check.sh\", carry=[\".device-data\"], timeout_s=600)"
    exit 0
fi

# ------------------------------------------------------------------------------------------------ plumbing
if [ -z "$WORK" ]; then WORK="$(mktemp -d /tmp/gpu_check.XXXXXX)"; else mkdir -p "$WORK"; fi
WORK="$(cd "$WORK" && pwd)"
mkdir -p "$WORK/steps" "$WORK/py"
LOG="$WORK/gpu_check.log"
exec 3>&1 4>&2
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!
DEADLINE=$((T0 + BUDGET - 30))   # 30 s kept for a step's SIGKILL grace (20 s) and the summary
FAILED_STEPS=""

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
note() { echo "[gpu_check $(elapsed "$T0") s] $*"; }
export -f now elapsed note

# record NAME STATUS RC SECONDS LIMIT REASON: one line per step for the summary.
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "${6:-}" > "$WORK/steps/$1.tsv"; }

# run_step NAME CAP RESERVE MIN FUNCTION ARGS...: run the step function under `timeout` for at most CAP seconds,
# leaving RESERVE seconds of the budget to the steps after it (RESERVE is for the default 540 s budget and
# scales with --budget); skipped when that leaves it under MIN seconds.
# SIGINT first, so Python steps stop with a traceback and helpers.course still writes the partly executed
# notebook; SIGKILL 20 s later. OPTIONAL=1 before the call: a timeout or skip does not fail the run.
run_step() {
    local name="$1" cap="$2" reserve=$(($3 * BUDGET / 540)) min="$4"; shift 4
    local left=$((DEADLINE - $(date +%s) - reserve)) limit rc start seconds status
    limit=$(( cap < left ? cap : left ))
    if [ "$limit" -lt "$min" ]; then
        note "=== $name: SKIPPED (${left} s of the budget left for it, it needs ${min} s)"
        record "$name" skipped "" 0 "$limit" "budget spent: ${left} s left, needs ${min} s"
        [ "${OPTIONAL:-0}" = 1 ] || FAILED_STEPS="$FAILED_STEPS $name"
        return 0
    fi
    note "=== $name: start (limit $limit s)"
    start=$(now)
    timeout -k 20 -s INT "$limit" bash -c 'set -u -o pipefail; "$@"' "$name" "$@"
    rc=$?
    seconds=$(elapsed "$start")
    if [ "$rc" = 0 ]; then status=ok
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then status=timeout
    else status=failed; fi
    if [ "$status" != ok ] && { [ "${OPTIONAL:-0}" != 1 ] || [ "$status" = failed ]; }; then
        FAILED_STEPS="$FAILED_STEPS $name"
    fi
    note "=== $name: $status (rc $rc, $seconds s of $limit s)"
    record "$name" "$status" "$rc" "$seconds" "$limit" "$([ "${OPTIONAL:-0}" = 1 ] && echo optional)"
    return 0
}
# A failed step that only means "nothing to do here" in a dry run: skipped, with the reason.
soften_in_dry_run() {
    [ "$MODE" = dry ] && grep -q $'\t\(failed\|timeout\)\t' "$WORK/steps/$1.tsv" || return 0
    record "$1" skipped "" 0 0 "$2"
    FAILED_STEPS="${FAILED_STEPS// $1/}"
    note "=== $1: counted as skipped in a dry run: $2"
}

export PYTHONUNBUFFERED=1 MPLBACKEND=Agg JUPYTER_PLATFORM_DIRS=1 PYTHONDONTWRITEBYTECODE=1
export REPO WORK MODE PY DATA WHEELS NEEDED_MODULES DEVICE_TESTS CUDA_TESTS
IPYTHON_DIR="$WORK/ipython"
mkdir -p "$IPYTHON_DIR/profile_default/startup"

# An IPython startup file for the notebook kernels: after every cell, write the kernel's peak CUDA memory to
# $SKINSEG_GPU_PEAK_FILE (torch.cuda.max_memory_allocated is per process, and the notebook runs in a kernel).
cat > "$IPYTHON_DIR/profile_default/startup/50-gpu-check-peak.py" <<'PYEOF'
def _gpu_check_peak(*_args, **_kwargs):
    import json, os, sys
    path = os.environ.get("SKINSEG_GPU_PEAK_FILE")
    if not path:
        return
    try:
        torch = sys.modules.get("torch")
        record = {"cells": _gpu_check_peak.cells + 1, "cuda": False}
        _gpu_check_peak.cells += 1
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            record.update(cuda=True, max_memory_allocated=torch.cuda.max_memory_allocated(),
                          max_memory_reserved=torch.cuda.max_memory_reserved())
        with open(path + ".tmp", "w") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
    except Exception as exc:  # never break the notebook for a figure
        print(f"gpu_check peak hook: {exc!r}")
_gpu_check_peak.cells = 0
get_ipython().events.register("post_run_cell", _gpu_check_peak)
PYEOF

# benchmarks/throughput.py run in-process, so its peak CUDA memory can be read after it (exit status kept).
cat > "$WORK/py/throughput_peak.py" <<'PYEOF'
import json, os, runpy, sys
peak_file, script = sys.argv[1], sys.argv[2]
sys.argv = [script, *sys.argv[3:]]
sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
code = 0
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
finally:
    import torch
    record = {"cuda": bool(torch.cuda.is_available() and torch.cuda.is_initialized())}
    if record["cuda"]:
        record.update(max_memory_allocated=torch.cuda.max_memory_allocated(),
                      max_memory_reserved=torch.cuda.max_memory_reserved())
    with open(peak_file, "w") as f:
        json.dump(record, f)
sys.exit(code)
PYEOF

note "repository $REPO, working folder $WORK, budget $BUDGET s, python '$PY'"

# ------------------------------------------------------------------------------------------------ 1. setup
step_setup() {
    local start missing site
    if ! command -v "$PY" >/dev/null 2>&1; then echo "setup: no '$PY' on PATH (--python PY)"; return 1; fi
    if ! "$PY" -c "import torch" 2>/dev/null; then
        echo "setup: '$PY' ($(command -v "$PY")) has no torch: pass --python with the interpreter that has it"
        return 1
    fi
    missing=$("$PY" - $NEEDED_MODULES <<'PYEOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
PYEOF
)
    if [ -n "$missing" ]; then
        echo "setup: '$PY' lacks: $missing"
        if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
            echo "setup: no wheels in $WHEELS: run 'bash benchmarks/gpu_check.sh --prepare' on the development"
            echo "       machine and name .device-data in the device call's carry"
            return 1
        fi
        site="$WORK/site"
        start=$(now)
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --disable-pip-version-check \
            --target "$site" "$WHEELS"/*.whl || { echo "setup: installing the carried wheels failed"; return 1; }
        echo "setup: installed $(ls "$WHEELS"/*.whl | wc -l) carried wheels into $site in $(elapsed "$start") s"
        echo "$site" > "$WORK/site.path"
    else
        echo "setup: '$PY' has every module the check needs; nothing installed"
    fi
    # The notebooks' kernel: this Python, whatever "python3" kernelspec the machine may have elsewhere.
    mkdir -p "$WORK/jupyter/kernels/python3"
    "$PY" - "$WORK/jupyter/kernels/python3/kernel.json" <<'PYEOF'
import json, sys
json.dump({"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
           "display_name": "Python 3 (gpu_check)", "language": "python"}, open(sys.argv[1], "w"))
PYEOF
    PYTHONPATH="$REPO${site:+:$site}${PYTHONPATH:+:$PYTHONPATH}" "$PY" - $NEEDED_MODULES <<'PYEOF'
import importlib, sys
bad = []
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every broken import, not only the first
        bad.append(f"{name}: {type(exc).__name__}: {exc}")
import helpers, helpers.course, helpers.train.fit  # the repository itself, from PYTHONPATH
print("setup: imports ok" if not bad else "setup: imports FAILED\n  " + "\n  ".join(bad))
sys.exit(1 if bad else 0)
PYEOF
}
export -f step_setup
run_step setup 60 420 15 step_setup
[ -f "$WORK/site.path" ] && SITE="$(cat "$WORK/site.path")" || SITE=""
export PYTHONPATH="$REPO${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
export JUPYTER_PATH="$WORK/jupyter${JUPYTER_PATH:+:$JUPYTER_PATH}"

# ------------------------------------------------------------------------------------------------ 2. env
step_env() {
    "$PY" - "$WORK/env.json" <<'PYEOF'
import json, os, platform, shutil, subprocess, sys
import torch
info = {"python": platform.python_version(), "executable": sys.executable, "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(), "platform": platform.platform(terse=True)}
try:
    info["cudnn"] = torch.backends.cudnn.version()
except Exception:
    info["cudnn"] = None
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(),
                gpu_memory_gib=round(props.total_memory / 2**30, 1), capability=f"{props.major}.{props.minor}",
                multiprocessors=props.multi_processor_count,
                bf16_native=torch.cuda.is_bf16_supported(including_emulation=False))
if shutil.which("nvidia-smi"):
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception as exc:
        info["nvidia_smi"] = f"failed: {exc}"
for mod in ("numpy", "segmentation_models_pytorch", "albumentations", "timm", "cv2", "nbclient", "ipykernel"):
    try:
        info.setdefault("packages", {})[mod] = __import__(mod).__version__
    except Exception as exc:
        info.setdefault("packages", {})[mod] = f"missing ({type(exc).__name__})"
from helpers import runtime
info["cpu_native_bf16"] = runtime.cpu_has_native_bf16()
json.dump(info, open(sys.argv[1], "w"), indent=1)
for key, value in info.items():
    print(f"env: {key} = {value}")
PYEOF
}
export -f step_env
run_step env 45 400 15 step_env
if [ ! -f "$WORK/env.json" ]; then
    HAS_CUDA=0; DRY_REASON="no CUDA found (the env step failed, see above)"
elif "$PY" -c "import json,sys; sys.exit(0 if json.load(open('$WORK/env.json'))['cuda_available'] else 1)"; then
    HAS_CUDA=1; DRY_REASON="forced by --dry-run (CUDA is available)"
else
    HAS_CUDA=0; DRY_REASON="no CUDA (torch $("$PY" -c 'import torch; print(torch.__version__)') sees no GPU here)"
fi
if [ "$MODE" = auto ]; then
    if [ "$HAS_CUDA" = 1 ]; then MODE=gpu; else MODE=dry; fi
fi
export MODE
if [ "$MODE" = dry ]; then
    echo "DRY RUN: ${DRY_REASON}: every step runs its CPU smoke version; no figure below is a GPU figure"
else
    echo "GPU RUN: $("$PY" -c "import json; e=json.load(open('$WORK/env.json')); print(e['gpu'], '| torch', e['torch'], '| CUDA', e['cuda_runtime'])")"
fi

# ------------------------------------------------------------------------------------------------ 3. data
DATA_OK=0
step_data() {
    local split n_img n_mask bad=0
    if [ ! -d "$DATA" ]; then
        echo "data: MISSING: $DATA does not exist. On the development machine run"
        echo "      'bash benchmarks/gpu_check.sh --prepare' (copies ../shared/data/isic-real there) and name"
        echo "      .device-data in the device call's carry: run(..., carry=[\".device-data\"])"
        return 1
    fi
    for split in train val holdout; do
        n_img=$(find "$DATA/$split/images" -maxdepth 1 -type f 2>/dev/null | wc -l)
        n_mask=$(find "$DATA/$split/masks" -maxdepth 1 -type f 2>/dev/null | wc -l)
        echo "data: $split: $n_img images, $n_mask masks"
        if [ "$n_img" = 0 ] || [ "$n_img" != "$n_mask" ]; then bad=1; fi
    done
    [ "$bad" = 0 ] || { echo "data: INCOMPLETE: every split needs as many masks as images (re-run --prepare)"; return 1; }
    echo "data: ok ($DATA; holdout is listed, never trained or tuned on)"
}
export -f step_data
run_step data 20 390 10 step_data
soften_in_dry_run data "carried data missing or incomplete (dry run: notebook 04 smoke-runs on the synthetic set)"
grep -q $'\tok\t' "$WORK/steps/data.tsv" && DATA_OK=1

# ------------------------------------------------------------------------------------------------ 4. tests
step_tests() {
    local addopts="-p no:cacheprovider -rfEs"
    if [ "$MODE" = gpu ]; then
        # shellcheck disable=SC2086
        "$PY" -m pytest -q -o addopts="$addopts" --junitxml="$WORK/pytest.xml" -k "not dry_run" \
            $CUDA_TESTS $DEVICE_TESTS
    else
        # shellcheck disable=SC2086
        "$PY" -m pytest -q -o addopts="$addopts" --junitxml="$WORK/pytest.xml" -k "not dry_run" $CUDA_TESTS \
            && "$PY" -m pytest -q -o addopts="-p no:cacheprovider" --collect-only $DEVICE_TESTS | tail -n 1
    fi
}
export -f step_tests
run_step tests 120 360 30 step_tests

# ------------------------------------------------------------------------------------------------ 5-7. notebooks, throughput
SMI_PID=""
start_smi() {   # sample the GPU's used memory once a second (context and cache included) while a step runs
    [ "$MODE" = gpu ] && command -v nvidia-smi >/dev/null 2>&1 || return 0
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 1000 > "$WORK/smi_$1.csv" 2>/dev/null &
    SMI_PID=$!
}
stop_smi() { [ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null; wait "$SMI_PID" 2>/dev/null; SMI_PID=""; }

# step_notebook TAG DATA_DIR|"": notebook 04 via helpers.course, with its own SKINSEG_HOME (runs, cache, figures),
# SKINSEG_DATA = DATA_DIR (unset: the synthetic set), no hub (the device machine reaches none: ImageNet weights
# fall back to random at once) and the kernel startup hook that records peak CUDA memory.
step_notebook() {
    local tag="$1" data="$2" profile_args
    if [ "$MODE" = gpu ]; then profile_args="--full --profile gpu"; else profile_args="--profile smoke"; fi
    mkdir -p "$WORK/home_$tag"
    unset SKINSEG_DATA SKINSEG_PROFILE SKINSEG_SMOKE
    [ -n "$data" ] && export SKINSEG_DATA="$data"
    # shellcheck disable=SC2086
    SKINSEG_HOME="$WORK/home_$tag" SKINSEG_GPU_PEAK_FILE="$WORK/peak_$tag.json" HF_HUB_OFFLINE=1 \
        IPYTHONDIR="$WORK/ipython" "$PY" -m helpers.course run --only 04 $profile_args --out "$WORK/executed_$tag" \
        | tee -i "$WORK/course_$tag.txt"
}
export -f step_notebook

if [ "$DATA_OK" = 1 ]; then
    start_smi nb04_real
    run_step nb04_real 330 60 60 step_notebook real "$DATA"
    stop_smi
elif [ "$MODE" = dry ]; then
    note "=== nb04_real: no carried data, so the dry run smoke-runs notebook 04 on the synthetic set instead"
    run_step nb04_real 240 60 30 step_notebook real ""
else
    note "=== nb04_real: FAILED: no carried data ($DATA); see the data step"
    record nb04_real failed "" 0 0 "carried data missing"
    FAILED_STEPS="$FAILED_STEPS nb04_real"
fi

step_throughput() {
    local args
    if [ "$MODE" = gpu ]; then
        args="--device cuda --img-size 256 --batch-size 16 --steps 8 --warmup 2 --amp --channels-last --precisions"
    else
        args="--device cpu --img-size 64 --batch-size 2 --steps 1 --warmup 1 --workers 0 --precisions"
    fi
    # shellcheck disable=SC2086
    env SKINSEG_HOME="$WORK/home_throughput" "$PY" "$WORK/py/throughput_peak.py" "$WORK/peak_throughput.json" \
        benchmarks/throughput.py $args --json > "$WORK/throughput.json"
}
export -f step_throughput
start_smi throughput
run_step throughput "$([ "$MODE" = gpu ] && echo 90 || echo 150)" 0 20 step_throughput
stop_smi

# Optional: only with 120 s left (drawing the 600-image synthetic set, then both trainings), never failing the run
# for want of time.
if [ "$MODE" = gpu ] || [ "$DATA_OK" = 1 ]; then
    start_smi nb04_synth
    OPTIONAL=1 run_step nb04_synth 330 5 "$([ "$MODE" = gpu ] && echo 120 || echo 20)" step_notebook synth ""
    stop_smi
else
    record nb04_synth skipped "" 0 0 "dry run without carried data: nb04_real already ran on the synthetic set"
fi

# ------------------------------------------------------------------------------------------------ summary
TOTAL_S=$(elapsed "$T0")
cat > "$WORK/py/summary.py" <<'PYEOF'
import csv, json, os, re, sys, xml.etree.ElementTree as ET
from pathlib import Path

from helpers.runfolder import history_path  # the run folder's file names (stdlib only: imports even here)

work, mode, total_s, budget, data_dir, out = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
failed_steps = sys.argv[7].split()

def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None

ORDER = ["setup", "env", "data", "tests", "nb04_real", "throughput", "nb04_synth"]
steps = {}
for f in sorted(work.glob("steps/*.tsv"), key=lambda f: (ORDER + [f.stem]).index(f.stem)):
    name, status, rc, seconds, limit, reason = (f.read_text().rstrip("\n").split("\t") + [""] * 6)[:6]
    steps[name] = {"status": status, "rc": int(rc) if rc.lstrip("-").isdigit() else None,
                   "seconds": float(seconds or 0), "limit_s": int(limit or 0), **({"reason": reason} if reason else {})}

env = load(work / "env.json") or {}
result = {"gpu_check": 1, "mode": mode, "dry_run": mode != "gpu", "total_s": round(total_s, 1), "budget_s": budget,
          "gpu": env.get("gpu"), "torch": env.get("torch"), "cuda": env.get("cuda_runtime"), "cudnn": env.get("cudnn"),
          "env": env, "steps": steps}

# tests: counts from the junit file, and whether the CUDA-only tests ran (not skipped)
tests = {}
try:
    root = ET.parse(work / "pytest.xml").getroot()
    cases = root.iter("testcase")
    for case in cases:
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped" and outcome == "passed":
                outcome = "skipped"
        key = f"{case.get('classname')}::{case.get('name')}"
        tests[key] = outcome
except (OSError, ET.ParseError):
    pass
counts = {k: sum(1 for v in tests.values() if v == k) for k in ("passed", "failed", "skipped")}
cuda_tests = {k: v for k, v in tests.items() if "test_gpu_check" in k and "cuda" in k.rsplit("::", 1)[-1]}
result["tests"] = {**counts, "failed_tests": sorted(k for k, v in tests.items() if v == "failed"),
                   "cuda_only": {k.rsplit("::", 1)[-1]: v for k, v in cuda_tests.items()},
                   "cuda_only_ran_on_cuda": bool(cuda_tests) and all(v != "skipped" for v in cuda_tests.values())}

def notebook(tag):
    info = {}
    text = (work / f"course_{tag}.txt").read_text() if (work / f"course_{tag}.txt").exists() else ""
    m = re.search(r"04_training\.ipynb\s+([\d.]+) s", text)
    info["seconds"] = float(m.group(1)) if m else None
    m = re.search(r"in the (\w+) run profile", text)
    info["profile"] = m.group(1) if m else None
    info["data"] = "synthetic" if tag == "synth" or (tag == "real" and "synthetic set" in text) else data_dir
    nb_path = work / f"executed_{tag}" / "04_training.ipynb"
    nb_text = nb_path.read_text() if nb_path.exists() else ""
    m = re.search(r"\{'train': (\d+), 'val': (\d+), 'test': (\d+)\}", nb_text)
    if m:
        info["pairs"] = dict(zip(("train", "val", "test"), map(int, m.groups())))
    info["pretrained_weights"] = ("not loaded (no hub on this machine): random init"
                                  if "could not be fetched" in nb_text else "loaded or not asked for")
    models = {}
    for model in ("resnet_unet_aspp", "se_unet"):
        hist = history_path(work / f"home_{tag}" / "runs" / f"04_{model}")
        if not hist.exists():
            continue
        rows = list(csv.DictReader(hist.open()))
        if not rows:
            continue
        dice = [float(r["val_dice"]) for r in rows]
        secs = [float(r["seconds"]) for r in rows]
        entry = {"epochs": len(rows), "val_dice_last": round(dice[-1], 4), "val_dice_best": round(max(dice), 4),
                 "val_dice_per_epoch": [round(d, 4) for d in dice], "epoch_seconds": [round(s, 1) for s in secs]}
        if info.get("pairs"):
            entry["train_images_per_s_incl_val"] = round(info["pairs"]["train"] * len(secs) / sum(secs), 1)
        models[model] = entry
    info["models"] = models
    peak = load(work / f"peak_{tag}.json") or {}
    info["peak_gpu_memory_gib"] = round(peak["max_memory_allocated"] / 2**30, 2) if peak.get("cuda") else None
    info["peak_gpu_reserved_gib"] = round(peak["max_memory_reserved"] / 2**30, 2) if peak.get("cuda") else None
    info["cells_run"] = peak.get("cells")
    smi = work / f"smi_nb04_{tag}.csv"
    if smi.exists():
        used = [int(x) for x in smi.read_text().split() if x.isdigit()]
        info["nvidia_smi_peak_used_mib"] = max(used) if used else None
    return info

for tag in ("real", "synth"):
    if (work / f"course_{tag}.txt").exists():
        result[f"nb04_{tag}"] = notebook(tag)

tp = load(work / "throughput.json")
if tp:
    peak = load(work / "peak_throughput.json") or {}
    result["throughput"] = {k: tp.get(k) for k in (
        "device", "gpu", "img_size", "batch_size", "amp", "channels_last", "workers", "train_images_per_s",
        "train_bare_images_per_s", "train_ratio", "infer_images_per_s", "infer_bare_images_per_s", "infer_ratio",
        "infer_files_images_per_s", "meets_target")}
    result["throughput"]["precisions"] = [{k: r.get(k) for k in ("what", "amp", "channels_last", "images_per_s", "speedup")}
                                          for r in tp.get("precisions", [])]
    result["throughput"]["peak_gpu_memory_gib"] = (round(peak["max_memory_allocated"] / 2**30, 2)
                                                   if peak.get("cuda") else None)

result["failed_steps"] = failed_steps
result["ok"] = not failed_steps
(work / "gpu_check.json").write_text(json.dumps(result, indent=1))
print("GPU_CHECK_JSON_BEGIN")
print(json.dumps(result, indent=1))
print("GPU_CHECK_JSON_END")

# the human summary
f = lambda v, fmt="{}": "n/a" if v is None else fmt.format(v)
print()
print("=" * 100)
print(("DRY RUN (CPU smoke versions, no GPU figure)" if mode != "gpu" else f"GPU CHECK on {result['gpu']}")
      + f": torch {result['torch']}, CUDA {result['cuda']}, cuDNN {result['cudnn']}; {total_s:.0f} s of {budget} s")
for name, s in steps.items():
    print(f"  step {name:<11} {s['status']:<8} {s['seconds']:7.1f} s (limit {s['limit_s']} s) {s.get('reason', '')}")
t = result["tests"]
print(f"  tests: {t['passed']} passed, {t['failed']} failed, {t['skipped']} skipped; CUDA-only tests ran on CUDA: "
      f"{t['cuda_only_ran_on_cuda']}" + (f"; failed: {', '.join(t['failed_tests'])}" if t["failed_tests"] else ""))
for tag, where in (("real", "README 'On the real ISIC images' paragraph"),
                   ("synth", "README notebook table gpu column, row 04, and helpers/course/profiles.py MEASURED_SECONDS['04']['gpu']")):
    nb = result.get(f"nb04_{tag}")
    if not nb:
        continue
    print(f"  notebook 04 ({nb['profile']} profile, {nb['data']}, pairs {nb.get('pairs')}): {f(nb['seconds'], '{:.1f} s')}"
          f" -> {where}")
    for model, m in nb["models"].items():
        print(f"      {model}: val Dice {m['val_dice_last']} after {m['epochs']} epochs (best {m['val_dice_best']}),"
              f" epochs {m['epoch_seconds']} s, {m.get('train_images_per_s_incl_val', 'n/a')} train images/s incl. val")
    print(f"      peak GPU memory (kernel, max_memory_allocated): {f(nb['peak_gpu_memory_gib'], '{} GiB')};"
          f" nvidia-smi peak used: {f(nb.get('nvidia_smi_peak_used_mib'), '{} MiB')}; ImageNet weights: {nb['pretrained_weights']}")
tp = result.get("throughput")
if tp:
    print(f"  throughput.py ({tp['device']}, {tp['img_size']} px, batch {tp['batch_size']}, amp {tp['amp']}, "
          f"channels_last {tp['channels_last']}, {tp['workers']} workers): training {f(tp['train_images_per_s'], '{:.1f}')} "
          f"images/s (bare model {f(tp['train_bare_images_per_s'], '{:.1f}')}, ratio {f(tp['train_ratio'], '{:.2f}')}), "
          f"inference {f(tp['infer_images_per_s'], '{:.1f}')} images/s (ratio {f(tp['infer_ratio'], '{:.2f}')}); "
          f"peak GPU memory {f(tp['peak_gpu_memory_gib'], '{} GiB')} -> benchmarks/README.md throughput section")
    for r in tp["precisions"]:
        print(f"      bare step {r['what']:<26} {f(r['images_per_s'], '{:.1f}')} images/s, speed-up {f(r['speedup'], '{:.2f}')}")
if mode == "gpu" and result.get("nb04_synth", {}).get("seconds"):
    print(f"  helpers/course/profiles.py: MEASURED_SECONDS['04']['gpu'] = {result['nb04_synth']['seconds']:.1f}; "
          f"MEASURED_ON['gpu'] = \"{result['gpu']}, torch {result['torch']}\" plus the date")
print("RESULT: " + ("all steps ok (or skipped for the reason shown)" if result["ok"]
                    else "FAILED steps: " + ", ".join(failed_steps)))
if out:
    print(f"files under $OUT: {out}")
PYEOF
OUT_DIR="${OUT:-}"
"$PY" "$WORK/py/summary.py" "$WORK" "$MODE" "$TOTAL_S" "$BUDGET" "$DATA" "$OUT_DIR" "$FAILED_STEPS"
SUMMARY_RC=$?

# ------------------------------------------------------------------------------------------------ files back
if [ -n "$OUT_DIR" ]; then
    mkdir -p "$OUT_DIR"
    cp "$WORK/gpu_check.json" "$OUT_DIR/" 2>/dev/null
    [ -f "$WORK/throughput.json" ] && cp "$WORK/throughput.json" "$OUT_DIR/throughput.json"
    for tag in real synth; do
        [ -f "$WORK/executed_$tag/04_training.ipynb" ] && cp "$WORK/executed_$tag/04_training.ipynb" "$OUT_DIR/nb04_$tag.ipynb"
    done
    for m in resnet_unet_aspp se_unet; do
        hist="$("$PY" -c 'import sys; from helpers.runfolder import history_path; print(history_path(sys.argv[1]))' \
                "$WORK/home_real/runs/04_$m")"
        [ -f "$hist" ] && cp "$hist" "$OUT_DIR/history_real_$m.csv"
    done
fi
exec 1>&3 2>&4 3>&- 4>&-
wait "$TEE_PID" 2>/dev/null || sleep 1
[ -n "$OUT_DIR" ] && cp "$LOG" "$OUT_DIR/gpu_check.log"
if [ "$KEEP_WORK" = 1 ]; then echo "working folder kept: $WORK"; else rm -rf "$WORK"; fi
[ "$SUMMARY_RC" = 0 ] && [ -z "$FAILED_STEPS" ] && exit 0
exit 1
