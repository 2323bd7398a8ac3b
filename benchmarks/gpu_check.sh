#!/usr/bin/env bash
# The CUDA path in one go, figures printed (about 5-8 minutes on one GPU):
#   1. the CUDA-only tests (pytest -k cuda),
#   2. AMP training against fp32 (images/s, loss, peak memory),
#   3. a real CUDA out-of-memory and the loop's batch back-off,
#   4. the throughput benchmark with GPU utilisation sampled by nvidia-smi,
#   5. with 2 or more GPUs, a 2-process DDP (nccl) training from the CLI.
# Self-contained: uses .venv when it exists, else makes it with installer/setup.sh.
# Without CUDA it runs the CPU fallbacks of 2 and 4 (small) and says what it skipped.
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (default /tmp/medlabeler-gpu-check)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-/tmp/medlabeler-gpu-check}"
mkdir -p "$out"
[ -x .venv/bin/python ] || bash installer/setup.sh test
py=.venv/bin/python
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
started=$(date +%s)
section() { echo; echo "== $* ($(( $(date +%s) - started )) s)"; }

cuda=$("$py" -c 'import torch; print(int(torch.cuda.is_available()))')
gpus=$("$py" -c 'import torch; print(torch.cuda.device_count())' || echo 0)
section "machine"
"$py" -c 'import torch, medlabeler; print("medlabeler", medlabeler.__version__, "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
[ "$cuda" = 1 ] || echo "no CUDA device: running the CPU fallbacks only"

section "1. CUDA-only tests"
if [ "$cuda" = 1 ]; then
  timeout 300 "$py" -m pytest -q -rs -k cuda tests/engine -p no:cacheprovider
else
  echo "skipped (they skip themselves without CUDA)"
fi

section "2. AMP training"
timeout 180 "$py" benchmarks/gpu_check.py amp

section "3. out of memory and the batch back-off"
timeout 120 "$py" benchmarks/gpu_check.py oom

section "4. throughput benchmark"
sampler=""
if [ "$cuda" = 1 ] && command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 250 > "$out/gpu_util.csv" &
  sampler=$!
  config='{"device": "cuda", "image_size": 256, "features": [32, 64, 128, 256], "batch_size": 32}'
  steps=200
else
  config='{"device": "cpu"}'
  steps=10
fi
timeout 300 "$py" -m medlabeler benchmark throughput --dataset mni-tissue-seg --out "$out/throughput" \
  --steps "$steps" --pretrain-steps "$steps" --repeats 2 --labels 16 --config "$config"
if [ -n "$sampler" ]; then
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
  "$py" - "$out/gpu_util.csv" <<'PY'
import sys
rows = [line.split(",") for line in open(sys.argv[1]) if line.count(",") == 2]
util = [float(r[1]) for r in rows if r[0].strip() == "0"]
mem = [float(r[2]) for r in rows if r[0].strip() == "0"]
busy = [u for u in util if u > 0]
if util:
    print(f"GPU 0 utilisation over {len(util)} samples (every 250 ms): mean {sum(util) / len(util):.0f}%, "
          f"mean while busy {sum(busy) / max(1, len(busy)):.0f}%, max {max(util):.0f}%; "
          f"memory used max {max(mem):.0f} MiB")
PY
fi

section "5. DDP on several GPUs"
if [ "$gpus" -ge 2 ]; then
  ddp="$out/ddp"; rm -rf "$ddp"; mkdir -p "$ddp"
  "$py" -c "
from pathlib import Path
import sys; sys.path.insert(0, 'benchmarks')
from gpu_check import make_project
make_project(Path('$ddp'), label_every=2).close()"
  echo '{"image_size": 256, "features": [32, 64, 128, 256], "batch_size": 16, "unlabeled_batch_size": 16, "steps": 100, "steps_per_epoch": 50}' > "$ddp/config.json"
  timeout 300 .venv/bin/torchrun --standalone --nproc_per_node 2 -m medlabeler train "$ddp/project" \
    --method mean-teacher --config "$ddp/config.json"
else
  echo "skipped: $gpus GPU(s) (nccl needs one GPU per process); the CPU/gloo path is tested in CI"
fi
section "done"
