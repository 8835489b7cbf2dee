"""The MLflow server image's entrypoint: ``mlflow server --app-name basic-auth [flags]`` with its auth config
written from the environment, and the pipeline pods' user created once the server answers.

Environment (the manifest fills it from two Secrets):
  MLFLOW_AUTH_ADMIN_USERNAME, MLFLOW_AUTH_ADMIN_PASSWORD   the admin (created by MLflow on an empty user store)
  MLFLOW_FLASK_SERVER_SECRET_KEY                            CSRF key of the auth app
  MLFLOW_AUTH_DATABASE_URI                                  the user store (default SQLite under /var/lib/mlflow)
  MLFLOW_PIPELINE_USERNAME, MLFLOW_PIPELINE_PASSWORD        optional: the user the pipeline pods log in as
  MLFLOW_PIPELINE_IS_ADMIN                                  "true": that user is an admin (default: not; it
      needs none: it creates its experiments and registered models and so manages them, and reads the rest with
      the default READ permission; divtune looks models up by search, since the auth app answers 403, not 404,
      on a name that is not registered yet).
"""

import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def _need(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        sys.exit(f"mlflow-entrypoint: {name} is not set (the server runs with authentication on)")
    return value


def _port(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a in ("--port", "-p") and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--port="):
            return a.split("=", 1)[1]
    return "5000"


def _call(port: str, admin: tuple[str, str], path: str, body: dict, method: str = "POST") -> None:
    token = base64.b64encode(f"{admin[0]}:{admin[1]}".encode()).decode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(), method=method,
        headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=30).read()


def _create_pipeline_user(port: str, admin: tuple[str, str], user: tuple[str, str], is_admin: bool) -> None:
    try:
        _call(port, admin, "users/create", {"username": user[0], "password": user[1]})
        print(f"mlflow-entrypoint: created user {user[0]!r}", file=sys.stderr, flush=True)
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        if "RESOURCE_ALREADY_EXISTS" not in body:
            raise SystemExit(f"mlflow-entrypoint: creating user {user[0]!r} failed: HTTP {exc.code} {body[:300]}")
    try:
        _call(port, admin, "users/update-admin", {"username": user[0], "is_admin": is_admin}, method="PATCH")
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"mlflow-entrypoint: setting {user[0]!r} admin={is_admin} failed: HTTP {exc.code} "
                         f"{exc.read().decode(errors='replace')[:300]}")


def main() -> int:
    admin = (_need("MLFLOW_AUTH_ADMIN_USERNAME"), _need("MLFLOW_AUTH_ADMIN_PASSWORD"))
    _need("MLFLOW_FLASK_SERVER_SECRET_KEY")
    db = os.environ.get("MLFLOW_AUTH_DATABASE_URI") or "sqlite:////var/lib/mlflow/basic_auth.db"
    conf = tempfile.NamedTemporaryFile("w", prefix="basic_auth.", suffix=".ini", delete=False)
    conf.write("[mlflow]\ndefault_permission = READ\n"
               f"database_uri = {db}\nadmin_username = {admin[0]}\n"
               "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    conf.close()
    env = dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=conf.name)  # the password stays in the environment only
    argv = sys.argv[1:]
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", *argv], env=env)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: server.send_signal(s))
    pipeline = (os.environ.get("MLFLOW_PIPELINE_USERNAME"), os.environ.get("MLFLOW_PIPELINE_PASSWORD"))
    if all(pipeline):
        port = _port(argv)
        for _ in range(300):
            if server.poll() is not None:
                return server.returncode
            try:
                # 127.0.0.1:PORT: --allowed-hosts must list it (the manifest does)
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except (urllib.error.URLError, OSError):
                time.sleep(1)
        is_admin = os.environ.get("MLFLOW_PIPELINE_IS_ADMIN", "false").lower() == "true"
        _create_pipeline_user(port, admin, pipeline, is_admin)  # type: ignore[arg-type]
    return server.wait()


if __name__ == "__main__":
    sys.exit(main())
