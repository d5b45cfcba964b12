#!/usr/bin/env bash
# GPU check of the `full` profile, sized to finish in about eight minutes on one GPU:
#   1. builds the environment (make venv: the pinned torch, the project, the Inception file);
#   2. writes a folder of synthetic RGB images (scripts/make_image_folder.py, no labels);
#   3. runs chapter 01 (DDPM baseline, Inception FID on 1024 samples per set) and chapter 02
#      (DIP on 256-px photographs, the paper's 5 × 128 net) in `full` on that folder, shrunk only
#      in step counts, seeds and photographs; prints each chapter's wall time and peak GPU memory
#      (torch.cuda.max_memory_allocated, recorded by the notebooks in metrics.json);
#   4. runs chapter 01 twice more, small, with DIPDDPM_DETERMINISTIC=1 and a fresh cache each
#      time (dipddpm_lib/repro.py: deterministic kernels, cuDNN without benchmarking, a fixed
#      cuBLAS workspace; applied when dipddpm_lib is imported in the kernel), and compares every
#      value of the two metrics.json (timings and peak memory excepted).
# Usage: scripts/gpu_check.sh [--dry-run] [WORK_DIR]   (default WORK_DIR: gpu_check/ in the repo)
#   --dry-run: write the image folder and print every command, run none of them.
# Exit status: 0 when every run finished and the two deterministic runs agree.
set -euo pipefail

cd "$(dirname "$0")/.."
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
WORK="$(realpath -m "${1:-gpu_check}")"
PY="${PY:-.venv/bin/python}"  # the environment's Python (make venv builds .venv)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-8}"

run() {  # echo a command; run it unless --dry-run
    echo "+ $*"
    if [[ $DRY == 0 ]]; then "$@"; fi
}

# NAME OUT_DIR CACHE_DIR YAML_PARAMETERS [VAR=VALUE ...]: one chapter in `full` on the GPU
chapter() {
    local name=$1 out=$2 cache=$3 params=$4
    mkdir -p "$out"
    run env DIPDDPM_CACHE="$cache" "${@:5}" "$PY" -m papermill --cwd notebooks -k python3 \
        --no-progress-bar "notebooks/$name.ipynb" "$out/$name.executed.ipynb" \
        -p profile full -p device cuda -p output_dir "$out" -y "$params"
}

report() {  # NAME OUT_DIR SECONDS: wall time and peak GPU memory of one run
    if [[ $DRY == 1 ]]; then return; fi
    "$PY" - "$1" "$2" "$3" <<'EOF'
import json, sys
name, out, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
m = json.load(open(f"{out}/metrics.json"))
peak = m.get("peak_gpu_memory_bytes")
peak = "not recorded" if peak is None else f"{peak / 2**30:.2f} GiB"
extra = ""
if "methods" in m:
    first = m["methods"][m["quality_bar"]["method"]]  # the baseline, the full DDPM chain
    extra = f"; FID of {first['label']}: {first['fid']['mean']:.2f} ({m['features']})"
print(f"== {name}: {secs:.0f} s, peak GPU memory (max_memory_allocated) {peak}{extra}")
EOF
}

timed() {  # NAME OUT CACHE PARAMS [VAR=VALUE ...]: a chapter, then its time and peak memory
    local t0 t1
    t0=$(date +%s)
    chapter "$@"
    t1=$(date +%s)
    report "$1${5:+ ($5)}" "$2" $((t1 - t0))
}

# 1. the environment
run make venv
if [[ $DRY == 0 ]]; then
    "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device: this is the GPU check'; print('GPU:', torch.cuda.get_device_name())"
    "$PY" -c "from dipddpm_lib.features import inception_path as p; assert p(), 'Inception file missing'; print('Inception file:', p())"
fi

# 2. the data: 2000 synthetic 64-px RGB images, no labels (1600 train, 400 test)
mkdir -p "$WORK"
PYTHON_FOR_DATA=$PY; [[ -x $PY ]] || PYTHON_FOR_DATA=python3
"$PYTHON_FOR_DATA" scripts/make_image_folder.py "$WORK/images" --n 2000 --size 64 --seed 0

# 3. chapters 01 and 02 in `full` (the full UNet at 64 px, Inception FID on 1024 samples)
CH01="{data_dir: '$WORK/images', train_steps: 500, num_samples: 1024, ddpm_steps: 100,
       sampler_steps: [10, 50], dpm_steps: [10], seeds: [0, 1], photo_prior_section: false}"
CH02="{images: [astronaut, camera], seeds: [0], iterations: 1000, showcase_iterations: 500}"
timed 01_ddpm_baseline "$WORK/ch01" "$WORK/cache_ch01" "$CH01"
timed 02_dip_baseline "$WORK/ch02" "$WORK/cache_ch02" "$CH02"

# 4. chapter 01 twice, deterministic, each from an empty cache
SMALL="{data_dir: '$WORK/images', train_steps: 100, num_samples: 256, ddpm_steps: 50,
        sampler_steps: [10], dpm_steps: [10], seeds: [0], photo_prior_section: false}"
for i in 1 2; do
    rm -rf "$WORK/cache_det$i"
    timed 01_ddpm_baseline "$WORK/det$i" "$WORK/cache_det$i" "$SMALL" \
        DIPDDPM_DETERMINISTIC=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
done
if [[ $DRY == 1 ]]; then exit 0; fi
"$PY" - "$WORK/det1/metrics.json" "$WORK/det2/metrics.json" <<'EOF'
import json, math, re, sys
SKIP = re.compile(r"(^|_)(wall|time|seconds)(_|$)|_s$|^peak_gpu_memory|^output_dir$|path")
def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if SKIP.search(str(k)):
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in one run")
            else:
                walk(a[k], b[k], f"{path}/{k}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]", out)
    elif not (a == b or (isinstance(a, float) and isinstance(b, float)
                         and math.isnan(a) and math.isnan(b))):
        out.append(f"{path}: {str(a)[:60]} vs {str(b)[:60]}")
out = []
walk(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), "", out)
print("\n".join(out[:40]))
print(f"== deterministic reruns: {'IDENTICAL' if not out else f'{len(out)} values differ'}")
sys.exit(1 if out else 0)
EOF
