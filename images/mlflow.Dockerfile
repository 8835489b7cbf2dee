# MLflow tracking server + model registry with authentication on (MLflow's basic-auth app), the PostgreSQL driver
# and boto3 installed at build time (images/requirements-mlflow.lock): the manifest installs nothing at start.
# One variant: the server needs no GPU.  Build with `make images`; the entrypoint is images/mlflow-entrypoint.py.
# Environment: MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD (the admin, from a Secret),
# MLFLOW_FLASK_SERVER_SECRET_KEY, optional MLFLOW_AUTH_DATABASE_URI (users; default SQLite in /var/lib/mlflow) and
# MLFLOW_PIPELINE_USERNAME / MLFLOW_PIPELINE_PASSWORD (the pipeline pods' user, created at start if absent).
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY images/requirements-mlflow.lock /tmp/requirements.lock
COPY certs/ /tmp/certs/
RUN if [ -s /tmp/certs/ca.crt ]; then export PIP_CERT=/tmp/certs/ca.crt; fi \
    && python3.11 -m venv /opt/venv \
    && /opt/venv/bin/pip install -q --no-deps --require-hashes -r /tmp/requirements.lock \
    && /opt/venv/bin/pip check
COPY images/mlflow-entrypoint.py /opt/venv/bin/mlflow-entrypoint

FROM ${BASE}
RUN useradd --create-home --uid 1000 --user-group mlflow && mkdir -p /var/lib/mlflow && chown 1000:1000 /var/lib/mlflow
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 HOME=/home/mlflow
USER 1000:1000
WORKDIR /var/lib/mlflow
EXPOSE 5000
# mlflow-entrypoint [mlflow server flags]: `mlflow server --app-name basic-auth FLAGS`
ENTRYPOINT ["/opt/venv/bin/python", "/opt/venv/bin/mlflow-entrypoint"]
