# divtune serving image: an OpenAI-compatible server for a promoted model (the KServe runtime uses the same image).
# Build with `make images`.  VARIANT=gpu (default): vLLM (`vllm serve`), versions from images/requirements-gpu.lock;
# VARIANT=cpu: `transformers serve` on the CPU torch wheel (vLLM has no CPU wheel on PyPI).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS build
ARG VARIANT=gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/tmp/wheels
COPY images/requirements-${VARIANT}.lock /tmp/requirements.lock
COPY wheels/ /tmp/wheels/
COPY certs/ /tmp/certs/
RUN if [ -s /tmp/certs/ca.crt ]; then export PIP_CERT=/tmp/certs/ca.crt; fi \
    && python3.11 -m venv /opt/venv \
    && /opt/venv/bin/pip install -q --no-deps --require-hashes -r /tmp/requirements.lock
# divtune itself: on CPU the entrypoint runs transformers serve through divtune.serve.server
COPY pyproject.toml README.md /src/
COPY divtune /src/divtune
COPY components /src/components
COPY pipelines /src/pipelines
COPY configs /src/configs
COPY manifests/kserve-vllm.yaml /src/manifests/kserve-vllm.yaml
RUN if [ -s /tmp/certs/ca.crt ]; then export PIP_CERT=/tmp/certs/ca.crt; fi \
    && /opt/venv/bin/pip install -q --no-deps /src && rm -rf /src
COPY images/serve-entrypoint.sh /opt/venv/bin/divtune-serve

FROM ${BASE}
ARG VARIANT=gpu
RUN if [ "$VARIANT" = gpu ]; then apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
        && rm -rf /var/lib/apt/lists/*; fi \
    && useradd --create-home --uid 1000 --user-group divtune
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DIVTUNE_IMAGE_VARIANT=${VARIANT}
USER 1000:1000
WORKDIR /home/divtune
EXPOSE 8000
# divtune-serve MODEL_DIR [server flags]: vllm serve (gpu) or transformers serve (cpu)
ENTRYPOINT ["divtune-serve"]
