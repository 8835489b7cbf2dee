#!/bin/sh
# divtune-serve MODEL [flags]: vLLM's OpenAI-compatible server where vLLM is installed (GPU image), else
# `transformers serve` (CPU image) with the model preloaded.
set -eu
if python -c "import vllm" 2>/dev/null; then exec vllm serve "$@"; fi
model=$1; shift
exec transformers serve "$model" --host 0.0.0.0 --port 8000 "$@"
