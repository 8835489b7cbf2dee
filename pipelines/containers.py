"""The retraining DAG in real containers: kfp.local's DockerRunner, each step in its own container from its own image.

``make e2e`` (images/e2e.sh) builds the images and calls this module, which

- starts the MLflow server image on loopback with authentication on (basic-auth app, admin and pipeline users with
  fresh passwords) and ``--serve-artifacts``, so steps log artifacts through it (no shared filesystem);
- runs the whole DAG with ``DockerRunner(network_mode="host")``: every step runs as its image's non-root user, with
  its own HOME and DIVTUNE_HOME (the container's own filesystem) and no bind mount but the artifact root;
- wraps each step in a guard (the container's entrypoint) that fails the step when it sees another step's private
  files or any host path but the artifact root, and leaves its own marker for the next steps to look for;
- prints the run summary (the promote step's) with each step's image, and stops the server.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

#: The entrypoint of every step's container: ``sh -c GUARD divtune-step <KFP's command line>``.
#: A step fails (exit 97) when it runs as root, when a host path other than the artifact root is mounted (kfp.local
#: also mounts its workspace: that one is root's, mode 0700, so the step can neither read nor write it), or when
#: its HOME, DIVTUNE_HOME, /tmp or the artifact root hold a private marker another step left; then it leaves its
#: own marker in its private directories and runs the command.
GUARD = r"""
set -eu
fail() {
  echo "divtune isolation check failed: $*" >&2
  echo "$(hostname): $*" >> "$DIVTUNE_STEP_GUARD_ROOT/.divtune-isolation-failures" 2>/dev/null || true
  exit 97
}
[ "$(id -u)" != 0 ] || fail "runs as root"
root=$DIVTUNE_STEP_GUARD_ROOT
while read -r _id _parent _dev mroot mpoint _rest; do
  case "$mpoint" in
    /|/proc|/proc/*|/sys|/sys/*|/dev|/dev/*|/etc/hosts|/etc/hostname|/etc/resolv.conf) ;;
    "$root") ;;
    /kfp-workspace) [ ! -w "$mpoint" ] || fail "the KFP workspace (no declared channel) is writable" ;;
    *) fail "host path mounted at $mpoint (only the artifact root $root may be)" ;;
  esac
done < /proc/self/mountinfo
seen=$(find "$HOME" "${DIVTUNE_HOME:-$HOME}" /tmp "$root" -name '.divtune-private-*' 2>/dev/null | head -1)
[ -z "$seen" ] || fail "sees another step's private file $seen"
me=.divtune-private-$(cat /proc/sys/kernel/random/uuid)
for d in "$HOME" "${DIVTUNE_HOME:-$HOME}" /tmp; do mkdir -p "$d" && : > "$d/$me"; done
exec "$@"
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _docker():
    import docker

    return docker.from_env()


class TrackingServer:
    """The MLflow server image on loopback (host network), basic-auth on, artifacts proxied; a context manager."""

    def __init__(self, image: str):
        self.image = image
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.admin = ("admin", secrets.token_urlsafe(18))
        self.pipeline = ("divtune-pipeline", secrets.token_urlsafe(18))
        self.container = None

    def __enter__(self) -> "TrackingServer":
        self.container = _docker().containers.run(
            self.image, detach=True, network_mode="host", name=f"divtune-e2e-mlflow-{self.port}",
            environment={
                "MLFLOW_AUTH_ADMIN_USERNAME": self.admin[0], "MLFLOW_AUTH_ADMIN_PASSWORD": self.admin[1],
                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(24),
                "MLFLOW_PIPELINE_USERNAME": self.pipeline[0], "MLFLOW_PIPELINE_PASSWORD": self.pipeline[1],
                "MLFLOW_PIPELINE_IS_ADMIN": "true",  # see images/mlflow-entrypoint.py: 403 on a model not yet there
            },
            command=["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                     "--backend-store-uri", "sqlite:////var/lib/mlflow/mlflow.db",
                     "--serve-artifacts", "--artifacts-destination", "/var/lib/mlflow/artifacts",
                     "--allowed-hosts", f"127.0.0.1:{self.port},localhost:{self.port}"])
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, timeout_s: float = 300) -> None:
        """Health, then an authenticated call as the pipeline user (created by the image's entrypoint)."""
        import base64

        token = base64.b64encode(":".join(self.pipeline).encode()).decode()
        url = f"{self.uri}/api/2.0/mlflow/experiments/search?max_results=1"
        deadline = time.monotonic() + timeout_s
        last = ""
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status == "exited":
                raise RuntimeError(f"the MLflow server exited: {self.container.logs(tail=20).decode()}")
            try:
                urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Basic {token}"}),
                                       timeout=5).read()
                # and authentication is really on: no credentials, no answer
                try:
                    urllib.request.urlopen(url, timeout=5)
                except urllib.error.HTTPError as exc:
                    if exc.code == 401:
                        return
                raise RuntimeError("the MLflow server answers without credentials (authentication is off)")
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
                time.sleep(1)
        raise RuntimeError(f"the MLflow server did not answer within {timeout_s:.0f}s: {last}")

    def client_env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": self.pipeline[0],
                "MLFLOW_TRACKING_PASSWORD": self.pipeline[1]}

    def __exit__(self, *exc) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception as err:  # noqa: BLE001 - teardown: report, never mask the run's own error
                print(f"warning: could not remove the MLflow server container: {err}", file=sys.stderr)
            self.container = None


def image_user(image: str) -> tuple[int, int]:
    """The numeric ``uid:gid`` an image runs as (the images say ``USER 1000:1000``)."""
    user = _docker().images.get(image).attrs["Config"].get("User") or "0"
    uid, _, gid = user.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise RuntimeError(f"image {image} names its user {user!r}: a numeric uid:gid is needed")
    return int(uid), int(gid or uid)


def step_images(cluster=None) -> dict[str, str]:
    """Each DAG task's image, as the compiled spec names it."""
    from google.protobuf import json_format

    from divtune_kfp.pipelines.retrain import make_pipeline

    spec = json_format.MessageToDict(make_pipeline(cluster).pipeline_spec)
    executors = spec["deploymentSpec"]["executors"]
    comps = spec["components"]
    out: dict[str, str] = {}

    def walk(dag: dict) -> None:  # tasks may sit in sub-DAGs (an exit handler's, a condition's)
        for name, task in dag.get("tasks", {}).items():
            comp = comps[task["componentRef"]["name"]]
            if "executorLabel" in comp:
                out[name] = executors[comp["executorLabel"]]["container"]["image"]
            else:
                walk(comp.get("dag", {}))

    walk(spec["root"]["dag"])
    return out


def run_in_containers(cfg, env: dict[str, str], *, run_key: str | None = None,
                      pipeline_root: str | None = None) -> tuple[str, dict[str, str]]:
    """The whole DAG under DockerRunner; each step's container gets ``env`` and nothing of this machine but the
    artifact root.  Returns the run key and each step's image."""
    from kfp import local

    from divtune_kfp.pipelines.local import run_local

    images = step_images()
    users = {image_user(i) for i in set(images.values())}
    if len(users) != 1:
        raise RuntimeError(f"the step images run as different users {sorted(users)}: one artifact root owner needed")
    uid, gid = users.pop()
    root = Path(pipeline_root or tempfile.mkdtemp(prefix="divtune-e2e-root-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chown(root, uid, gid)  # the steps' user writes the artifact root (a fresh PVC has the same problem)
    step_env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "DIVTUNE_STEP_GUARD_ROOT": str(root), **env}
    runner = local.DockerRunner(network_mode="host", environment=step_env,
                                entrypoint=["/bin/sh", "-c", GUARD, "divtune-step"])
    workspace = tempfile.mkdtemp(prefix="divtune-e2e-ws-")  # kfp.local mounts one in every step: keep it closed
    os.chmod(workspace, 0o700)
    # kfp's DockerRunner counts a container removed before its wait as a success: watch the exit codes ourselves
    with _ExitWatch(set(images.values())) as watch:
        try:
            key = run_local(cfg, run_key, pipeline_root=str(root), runner=runner, workspace_root=workspace)
        finally:
            if os.path.isdir(workspace) and not os.listdir(workspace):
                os.rmdir(workspace)
            failures = root / ".divtune-isolation-failures"
            if failures.is_file():
                raise RuntimeError(f"isolation check failed: {failures.read_text().strip()}")
    if watch.failed:
        raise RuntimeError(f"step containers exited non-zero: {watch.failed}")
    return key, images


class _ExitWatch:
    """Collect the exit codes of containers from ``images`` (docker ``die`` events) while the run lasts."""

    def __init__(self, images: set[str]):
        self.images = images
        self.failed: list[str] = []
        self._events = None

    def __enter__(self) -> "_ExitWatch":
        import threading

        self._events = _docker().events(decode=True, filters={"type": "container", "event": "die"})

        def watch():
            try:
                for ev in self._events:
                    attrs = ev.get("Actor", {}).get("Attributes", {})
                    if attrs.get("image") in self.images and attrs.get("exitCode", "0") != "0":
                        self.failed.append(f"{attrs.get('image')} exit {attrs.get('exitCode')}")
            except Exception:  # noqa: BLE001 - the stream closes when the run ends
                pass

        threading.Thread(target=watch, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1)  # the last die event
        self._events.close()


def format_step_images(images: dict[str, str]) -> str:
    order = ["open-run", "prepare-base", "synthesize-data", "train", "merge-lora", "evaluate", "evaluate-2", "promote"]
    names = sorted(images, key=lambda n: (order.index(n) if n in order else len(order), n))
    width = max(map(len, names))
    return "\n".join(["steps (each in its own container):"] + [f"  {n:<{width}}  {images[n]}" for n in names])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m divtune_kfp.pipelines.containers", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="toy")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--mlflow-image", required=True, help="the MLflow server image (images/mlflow.Dockerfile)")
    p.add_argument("--keep-root", action="store_true", help="keep the artifact root after the run")
    args = p.parse_args(argv)

    import shutil

    from divtune.config import load_config
    from divtune_kfp.pipelines.commands import _summary

    cfg = load_config(args.preset, overrides=args.overrides)
    root = tempfile.mkdtemp(prefix="divtune-e2e-root-")
    ok = False
    try:
        with TrackingServer(args.mlflow_image) as server:
            print(f"[e2e] MLflow {args.mlflow_image} at {server.uri} (basic auth, proxied artifacts)", file=sys.stderr)
            os.environ.update(server.client_env())  # this process reads the summary as the pipeline user
            key, images = run_in_containers(cfg, server.client_env(), pipeline_root=root)
            print(_summary(cfg, key))
            print(format_step_images(images))
            print(json.dumps({"run_key": key, "images": images}, sort_keys=True), file=sys.stderr)
        ok = True
    finally:
        if ok and not args.keep_root:
            shutil.rmtree(root, ignore_errors=True)
        elif not ok:
            print(f"[e2e] artifact root kept for inspection: {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
