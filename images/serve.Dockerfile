# divtune serving image: vLLM's OpenAI-compatible server (the KServe runtime uses the same image).
# Build from the repository root:  docker build -f images/serve.Dockerfile -t ghcr.io/divtune/divtune-serve:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install "vllm>=0.11"

RUN useradd --create-home --uid 1000 divtune
USER divtune
EXPOSE 8000
ENTRYPOINT ["vllm", "serve"]
