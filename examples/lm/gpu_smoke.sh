#!/usr/bin/env bash
# The real example at a larger scale on a GPU machine: bf16, more prompts, seeds and steps.
# Not run yet (no GPU was available where it was written): the first run is the test.
#   bash examples/lm/gpu_smoke.sh [OUT]
set -euo pipefail
out=${1:-runs/lm-smollm2-gpu}
python - <<'PY'
import torch, sys
if not torch.cuda.is_available():
    sys.exit("gpu_smoke.sh: no CUDA device here (torch.cuda.is_available() is False)")
print("device:", torch.cuda.get_device_name(0))
PY
time incriminate distill --config configs/lm/smollm2.yaml --out "$out" --workers 1 \
  device=cuda dtype=bfloat16 prompts=200 seeds=4 train.steps=100 train.batch_size=16 \
  cache.batch_size=64 cache.max_new_tokens=64
python - "$out/results.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
v, d = r["verdict"], r["direct"]
print(f"verdict {v['decision']} p={v['p_value']:.4g}; direct baseline {d['decision']} p={d['p_value']:.4g}")
assert len(r["runs"]) == 3 * 4 * 4, len(r["runs"])  # 3 configurations x 4 seeds x 4 teachers
PY
