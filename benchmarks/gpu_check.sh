#!/usr/bin/env bash
# The CUDA check (issue "Numbers a reviewer can check", item 6): on a machine with one NVIDIA GPU, in
# under 10 minutes, from the repository root, with a Python that has a CUDA build of torch and attnrag's
# requirements (PYTHON, default python3) and the default models cached (attnrag models fetch):
#   1. tests/test_cuda.py: CUDA against CPU (embeddings, teacher scores fp32 and bf16, a bf16 training
#      run that loads back on the CPU), plus the tests that pick devices;
#   2. one short training in bf16 on the real default models: attnrag demo --quick --device cuda;
#   3. the teacher-pass benchmark (plain forward against the teacher pass at K = 20) in bf16 and fp32.
# Everything lands in ${OUT:-gpu-check}/ with provenance (command, commit, machine, versions, times):
# the demo's results.json and the benchmark's JSON record it themselves, and provenance.json covers the rest.
set -uo pipefail
PYTHON=${PYTHON:-python3}
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
start=$(date -u +%FT%TZ)
"$PYTHON" - "$OUT/provenance.json" "$start" <<'PY'
import json, sys
from attnrag.provenance import Provenance
import torch
record = Provenance.start().record()
record.update({"check": "benchmarks/gpu_check.sh", "started_at": sys.argv[2],
               "cuda": torch.version.cuda, "device_name": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None})
json.dump(record, open(sys.argv[1], "w"), indent=2)
PY
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs one')" || exit 2
status=0
"$PYTHON" -m pytest -q -rs tests/test_cuda.py tests/test_distributed.py 2>&1 | tee "$OUT/tests.log" || status=1
timeout 300 "$PYTHON" -m attnrag demo --quick --device cuda --out "$OUT/demo-quick" 2>&1 | tail -n 40 > "$OUT/demo.log" || status=1
for precision in bf16 fp32; do  # JSON on stdout (config, rows with paired-ratio intervals, machine)
  ATTNRAG_BENCH_DEVICE=cuda timeout 150 "$PYTHON" benchmarks/bench_teacher_pass.py --precision "$precision" \
      > "$OUT/teacher_pass_$precision.json" 2> "$OUT/teacher_pass_$precision.log" || status=1
done
echo "gpu check finished $(date -u +%FT%TZ) status=$status" | tee -a "$OUT/tests.log"
exit $status
