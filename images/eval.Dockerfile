# divtune evaluation image: vLLM offline generation, lm-eval, sentence-transformers, divtune.
# Build from the repository root:  docker build -f images/eval.Dockerfile -t ghcr.io/divtune/divtune-eval:0.1.0 .
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIVTUNE_HOME=/var/lib/divtune
RUN apt-get update && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/divtune
COPY pyproject.toml README.md ./
COPY divtune ./divtune
COPY components ./components
COPY pipelines ./pipelines
COPY configs ./configs
RUN pip install "torch>=2.6" && pip install ".[gpu]"

RUN useradd --create-home --uid 1000 divtune && mkdir -p /var/lib/divtune && chown divtune /var/lib/divtune
USER divtune
ENTRYPOINT ["divtune"]
