#!/usr/bin/env bash
# Live validation of two study scenarios (issue 8) on the CPU validation model: runs
# `exfairs-live validate` for exfairs-1 and exfairs-3 (gate experiments, load 0.9 × the CPU profile's
# capacity, 90 s of arrivals, seed 0) and writes benchmarks/results/validation_study.md from the
# printed reports (engine log lines and progress dropped). Needs the live extra and a model built by
# `make_tiny_model(DIR, "validation")`; pass DIR as $1 (default /tmp/exfairs-models/validation).
set -u
cd "$(dirname "$0")/../.."
MODEL=${1:-/tmp/exfairs-models/validation}
PY=${PYTHON:-python}
export HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 VLLM_CPU_OMP_THREADS_BIND=nobind
LOG=$(mktemp)
for scen in exfairs-1 exfairs-3; do
  echo "=== $scen $(date -u +%H:%M:%S)"
  "$PY" -m exfairs.live.cli validate "$scen" -e QUEUE_FCFS -e QUEUE_VTC -e QUEUE_ExFairS \
    --model "$MODEL" --load-format dummy --skip-tokenizer-init \
    --dtype float32 --enforce-eager --profile cpu-llama-60m --load 0.9 --duration 90 \
    --omp-threads 1 --out "benchmarks/results/validation/study-$scen"
  echo "=== rc $? $(date -u +%H:%M:%S)"
done > "$LOG" 2>&1
OUT=benchmarks/results/validation_study.md
{
  echo "# Live validation of study scenarios exfairs-1 and exfairs-3 (CPU validation model)"
  echo
  echo "Produced by \`bash benchmarks/validation/study_validation.sh\` on $(date -u +%Y-%m-%d) on a shared"
  echo "2-core CPU machine (vllm-cpu 0.32, config-only 60M Llama, float32, eager, OMP_NUM_THREADS=1,"
  echo "profile \`cpu-llama-60m\`). One seed (0), 90 s of arrivals at load 0.9 of the profile's"
  echo "estimated capacity, gate experiments; per-experiment results, plots and validation.json in"
  echo "\`benchmarks/results/validation/study-<scenario>/\`. Errors are (sim − live) / live; targets"
  echo "(issue 6): mean TTFT and e2e within 10% per client, violation rate within 5 points, same ranking."
  echo
  echo '```'
  grep -v 't=.*arrived\|^(\|INFO\|WARNING\|Triton\|FutureWarning\|if hasattr\|wrapper = \|^\[W' "$LOG"
  echo '```'
} > "$OUT.tmp" && mv "$OUT.tmp" "$OUT"
rm -f "$LOG"
echo "wrote $OUT"
