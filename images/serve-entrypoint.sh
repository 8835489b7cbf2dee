#!/bin/sh
# divtune-serve MODEL [flags]: vLLM's OpenAI-compatible server where vLLM is installed (GPU image), else
# `transformers serve` (CPU image) with the model preloaded, through divtune.serve.server: the pinned model listed
# on /v1/models, completions that carry only the answer for any chat template, n samples per request.
set -eu
if python -c "import vllm" 2>/dev/null; then exec vllm serve "$@"; fi
model=$1; shift
exec python -m divtune.serve.server "$model" --host 0.0.0.0 --port 8000 "$@"
