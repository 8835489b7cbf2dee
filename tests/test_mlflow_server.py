"""A real `mlflow server` (SQLite backend store, artifacts proxied to S3 on a moto server) over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from support import env_vars, free_port, one_error_line


@pytest.fixture
def mlflow_server(tmp_path, aws_env):
    from divtune import storage

    storage.client().create_bucket(Bucket="mlflow-artifacts")
    port = free_port()
    env = {**os.environ, "MLFLOW_S3_ENDPOINT_URL": aws_env}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--serve-artifacts",
         "--artifacts-destination", "s3://mlflow-artifacts/mlartifacts", "--workers", "1"],
        stdout=open(tmp_path / "server.log", "wb"), stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if requests.get(url + "/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start: " + (tmp_path / "server.log").read_text()[-2000:])
    try:
        with env_vars(MLFLOW_TRACKING_URI=url, MLFLOW_HTTP_REQUEST_TIMEOUT="5"):  # retries: the session's (conftest)
            yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_registry_over_http_with_artifacts_in_s3(mlflow_server, tmp_path, cli):
    import mlflow

    from divtune import storage
    from divtune.registry import models as reg
    from divtune.registry import tracking

    url, proc = mlflow_server
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "qwen2"}')
    (model / "model.safetensors").write_bytes(b"w" * 1000)
    tracking.setup()
    exp = tracking.experiment_id("server-test")
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_artifacts(str(model), "model")
    name = f"srv-{uuid.uuid4().hex[:6]}"
    mv = reg.register_version(name, f"{run.info.artifact_uri}/model", run.info.run_id, "rk-1", {"divtune.decision": "promote"})
    reg.set_alias(name, reg.CHAMPION, mv.version)
    # the artifacts really are in S3, behind the tracking server's proxy
    keys = [o["Key"] for o in storage.client().list_objects_v2(Bucket="mlflow-artifacts").get("Contents", [])]
    assert any(k.endswith("model/model.safetensors") for k in keys), keys
    got = reg.download_model_version(f"models:/{name}@champion", tmp_path / "dl")
    assert (got / "model.safetensors").read_bytes() == b"w" * 1000
    # the CLI reads the same registry over HTTP
    show = cli("registry", "show", "--name", name)
    assert show.returncode == 0 and "champion lineage: v1" in show.stdout, show.stderr[-1500:]

    # server stopped: one line (naming the server) after MLflow's retries, nothing changes
    proc.terminate()
    proc.wait(timeout=20)
    res = cli("registry", "rollback", "--name", name)
    assert url in one_error_line(res, ("divtune: retrying MLflow at ",))
