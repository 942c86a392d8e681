#!/usr/bin/env bash
# Every GPU check of docs/performance.md in one go, for pra-S on one GPU (aim: under 10 minutes on
# an H100/H200); never run in CI. Run from the checkout with the project's Python on the PATH:
#   1. the training step in bf16 (time, images/s, peak memory, MFU) at batch $TRAIN_BATCH, with
#      SDPA and with xformers attention ($ATTENTION), each with and without torch.compile
#      ($COMPILE) (train_speed.py);
#   2. every rollout's training step and peak memory as a ratio to teacher forcing at $TOKENS
#      tokens, batch 32 (train_step.py);
#   3. sampling s/image, KV-cached and recomputing, and cached with the decoding step and the
#      head's network compiled in each torch.compile mode of $SAMPLE_COMPILE, at $TOKENS tokens and
#      batch $SAMPLE_BATCH, with the config's guidance (sampling.py); torch's reasons for any graph
#      not run as a CUDA graph (TORCH_LOGS=perf_hints) go to sampling_torch_logs.txt beside the results.
# Results go to benchmarks/results/ (or $PRAKIT_BENCHMARK_RESULTS), named by the GPU.
# Usage: bash benchmarks/gpu_checks.sh [OVERRIDES]   (applied to every check, e.g. model.preset=pra-B)
# $CONFIG, $TRAIN_BATCH, $TOKENS, $SAMPLE_BATCH and $SAMPLE_COMPILE change what is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
config=${CONFIG:-experiments/imagenet256/pra-S.toml}
started=$SECONDS
python benchmarks/train_speed.py --config "$config" --batch-size "${TRAIN_BATCH:-256}" \
    --attention "${ATTENTION:-sdpa,xformers}" --compile "${COMPILE:-off,on}" --sample-images 0 "$@"
python benchmarks/train_step.py --config "$config" --lengths "${TOKENS:-256}" --batch-size 32 "$@"
TORCH_LOGS=${TORCH_LOGS:-perf_hints} python benchmarks/sampling.py --config "$config" --lengths "${TOKENS:-256}" \
    --batch-sizes "${SAMPLE_BATCH:-256}" --head-steps 50 --compile "${SAMPLE_COMPILE:-default,reduce-overhead}" "$@" \
    2> >(tee "${PRAKIT_BENCHMARK_RESULTS:-benchmarks/results}/sampling_torch_logs.txt" >&2)
echo "gpu_checks: $((SECONDS - started)) s"
