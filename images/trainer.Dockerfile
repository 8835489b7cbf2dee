# divtune trainer image: torch + TRL + peft + divtune (+ vLLM for colocated generation in the GPU variant).
# Runs open_run, prepare_base, synthesize_data, train, merge_lora, promote and the TrainJob nodes.
# Build with `make images` (images/build.sh stages a small context: the package, the lock files, wheels/).
#   VARIANT=gpu (default): BASE python:3.11-slim-bookworm (Debian bookworm's Python 3.11, no deadsnakes); CUDA comes
#     from the PyPI torch wheels (nvidia-* pinned in images/requirements-gpu.lock); the host driver from the NVIDIA
#     container toolkit.  gcc: Triton (vLLM, torch.compile) compiles its launcher stubs at run time.
#   VARIANT=cpu: the CPU torch wheel (wheels/, PIP_FIND_LINKS), no vLLM; `make e2e` builds it on a debootstrap base.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS deps
ARG VARIANT=gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_FIND_LINKS=/tmp/wheels
COPY images/requirements-${VARIANT}.lock /tmp/requirements.lock
COPY wheels/ /tmp/wheels/
COPY certs/ /tmp/certs/
RUN if [ -s /tmp/certs/ca.crt ]; then export PIP_CERT=/tmp/certs/ca.crt; fi \
    && python3.11 -m venv /opt/venv \
    && /opt/venv/bin/pip install -q --no-deps --require-hashes -r /tmp/requirements.lock

# the project as a wheel, apart from the dependencies: a code change rebuilds only the last layers
FROM deps AS wheel
COPY pyproject.toml README.md /src/
COPY divtune /src/divtune
COPY components /src/components
COPY pipelines /src/pipelines
COPY configs /src/configs
COPY manifests/kserve-vllm.yaml /src/manifests/kserve-vllm.yaml
# the installed configs/images.yaml names this image's own registry and tag (the TrainJob step reads it in the pod)
ARG IMAGE_REGISTRY=ghcr.io/divtune
ARG IMAGE_TAG=0.1.0
RUN sed -i -e "s|^registry:.*|registry: ${IMAGE_REGISTRY}|" -e "s|^tag:.*|tag: ${IMAGE_TAG}|" /src/configs/images.yaml \
    && if [ -s /tmp/certs/ca.crt ]; then export PIP_CERT=/tmp/certs/ca.crt; fi \
    && /opt/venv/bin/pip wheel -q --no-deps -w /tmp/dist /src \
    && /opt/venv/bin/pip install -q --no-deps /tmp/dist/divtune-*.whl && /opt/venv/bin/pip check

FROM ${BASE}
ARG VARIANT=gpu
RUN if [ "$VARIANT" = gpu ]; then apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev git \
        && rm -rf /var/lib/apt/lists/*; fi \
    && useradd --create-home --uid 1000 --user-group divtune \
    && mkdir -p /var/lib/divtune && chown 1000:1000 /var/lib/divtune
COPY --from=deps /opt/venv /opt/venv
COPY --from=wheel /tmp/dist/ /tmp/dist/
RUN /opt/venv/bin/pip install -q --no-deps --no-index /tmp/dist/divtune-*.whl && rm -rf /tmp/dist
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 DIVTUNE_HOME=/var/lib/divtune DIVTUNE_IMAGE_VARIANT=${VARIANT}
# numeric: Kubernetes' runAsNonRoot can verify it
USER 1000:1000
WORKDIR /home/divtune
# no ENTRYPOINT: KFP (Kubernetes and DockerRunner alike) gives the whole command line
CMD ["divtune", "--help"]
