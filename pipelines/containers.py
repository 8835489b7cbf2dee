"""The retraining DAG in real containers: kfp.local's DockerRunner, each step in its own container from its own image.

``make e2e`` (images/e2e.sh) builds the images and calls this module, which

- starts the MLflow server image on loopback with authentication on (basic-auth app, admin and pipeline users with
  fresh passwords) and ``--serve-artifacts``, so steps log artifacts through it (no shared filesystem); the steps
  reach it by a Service-style host name (``mlflow.divtune-e2e.svc.cluster.local``, mapped to loopback in each
  container's /etc/hosts), which the server's ``--allowed-hosts`` must name, as on a cluster;
- starts an S3 API (moto's server) for the models bucket, reached the same way (``s3.divtune-e2e.svc...``): merge
  uploads the merged model there and evaluate/promote download it from the registered ``s3://`` source;
- prepares a cache volume the way a fresh PVC is (a root-owned, mode 0755 directory) and runs the command of the
  prepare Job in ``manifests/cache-pvc.yaml`` on it, as root, as an operator would; every step mounts it at
  ``cluster.cache_mount_path`` (``$DIVTUNE_HOME`` and ``$HF_HOME`` there: model cache, checkpoints);
- runs the whole DAG with ``DockerRunner(network_mode="host")``: every step runs as its image's non-root user, with
  its own HOME (the container's own filesystem) and no bind mount but the artifact root and the cache volume;
- wraps each step in a guard (the container's entrypoint) that fails the step when it sees another step's private
  files or any host path but those two, and leaves its own marker for the next steps to look for;
- with ``--kill-step STEP``: kills that step's container (SIGKILL, as an OOM kill or a node loss does) once it has
  written its first checkpoint, checks that the exit handler left the MLflow parent run FAILED, then runs the same
  pipeline run again and checks that training resumed from the checkpoint;
- prints the run summary (the promote step's) with each step's image, and stops what it started.
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
#: A step fails (exit 97) when it runs as root, when a host path other than the artifact root or the cache volume is
#: mounted (kfp.local also mounts its workspace: that one is root's, mode 0700, so the step can neither read nor
#: write it), or when its HOME, /tmp, DIVTUNE_HOME (unless that is the cache volume), the artifact root or the cache
#: volume hold a private marker another step left; then it leaves its own marker in its private directories (never
#: on the shared volume or the artifact root) and runs the command.
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
    "${DIVTUNE_CACHE_VOLUME:-/nonexistent}") ;;
    /kfp-workspace) [ ! -w "$mpoint" ] || fail "the KFP workspace (no declared channel) is writable" ;;
    *) fail "host path mounted at $mpoint (only the artifact root $root may be)" ;;
  esac
done < /proc/self/mountinfo
cache=${DIVTUNE_CACHE_VOLUME:-}
private="$HOME /tmp"
[ -z "${DIVTUNE_HOME:-}" ] || [ "$DIVTUNE_HOME" = "$cache" ] || private="$private $DIVTUNE_HOME"
seen=$(find $private "$root" $cache -name '.divtune-private-*' 2>/dev/null | head -1)
[ -z "$seen" ] || fail "sees another step's private file $seen"
me=.divtune-private-$(cat /proc/sys/kernel/random/uuid)
for d in $private; do mkdir -p "$d" && : > "$d/$me"; done
exec "$@"
"""

#: The host names the steps reach the services by, as pods reach a Service (mapped to loopback in /etc/hosts).
MLFLOW_HOST = "mlflow.divtune-e2e.svc.cluster.local"
S3_HOST = "s3.divtune-e2e.svc.cluster.local"
MODELS_BUCKET = "divtune-models"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _docker():
    import docker

    return docker.from_env()


class TrackingServer:
    """The MLflow server image on loopback (host network), basic-auth on, artifacts proxied; a context manager."""

    def __init__(self, image: str, *, pipeline_admin: bool = False):
        self.image = image
        self.pipeline_admin = pipeline_admin
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
                "MLFLOW_PIPELINE_IS_ADMIN": str(self.pipeline_admin).lower(),  # the pipeline user is no admin
            },
            command=["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
                     "--backend-store-uri", "sqlite:////var/lib/mlflow/mlflow.db",
                     "--serve-artifacts", "--artifacts-destination", "/var/lib/mlflow/artifacts",
                     "--allowed-hosts", f"{MLFLOW_HOST}:{self.port},127.0.0.1:{self.port}"])
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
        """This process's view (loopback)."""
        return {"MLFLOW_TRACKING_URI": self.uri, "MLFLOW_TRACKING_USERNAME": self.pipeline[0],
                "MLFLOW_TRACKING_PASSWORD": self.pipeline[1]}

    def step_env(self) -> dict[str, str]:
        """The steps' view: the Service-style host name."""
        return {**self.client_env(), "MLFLOW_TRACKING_URI": f"http://{MLFLOW_HOST}:{self.port}"}

    def __exit__(self, *exc) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception as err:  # noqa: BLE001 - teardown: report, never mask the run's own error
                print(f"warning: could not remove the MLflow server container: {err}", file=sys.stderr)
            self.container = None


class S3Endpoint:
    """An S3 API (moto's server, from the dev environment) on loopback with the models bucket; a context manager."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.server = None

    def __enter__(self) -> "S3Endpoint":
        import boto3
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{self.port}", **self._credentials()).create_bucket(
            Bucket=MODELS_BUCKET)
        return self

    @staticmethod
    def _credentials() -> dict[str, str]:
        return {"aws_access_key_id": "divtune-e2e", "aws_secret_access_key": "divtune-e2e", "region_name": "us-east-1"}

    def overrides(self) -> list[str]:
        return [f"storage.models_uri=s3://{MODELS_BUCKET}/e2e", f"storage.endpoint_url=http://{S3_HOST}:{self.port}"]

    def step_env(self) -> dict[str, str]:
        c = self._credentials()
        return {"AWS_ACCESS_KEY_ID": c["aws_access_key_id"], "AWS_SECRET_ACCESS_KEY": c["aws_secret_access_key"],
                "AWS_DEFAULT_REGION": c["region_name"]}

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class CacheVolume:
    """A host directory standing for the cache PVC: created as a fresh volume is (root-owned, 0755), then prepared
    by the command of the Job in ``manifests/cache-pvc.yaml``, run as that Job runs it (root, the volume mounted at
    the Job's mount path), in ``image``.  Removed on exit."""

    def __init__(self, image: str, mount_path: str) -> None:
        self.image = image
        self.mount_path = mount_path
        self.host_dir: Path | None = None

    @staticmethod
    def prepare_job() -> tuple[list[str], str]:
        """The prepare Job's container command and mount path, from the manifest."""
        import yaml

        manifest = Path(__file__).resolve().parents[1] / "manifests" / "cache-pvc.yaml"
        if not manifest.is_file():  # an installed package: the manifest ships in the checkout only
            raise RuntimeError(f"{manifest} not found: run make e2e from the checkout")
        job = next(d for d in yaml.safe_load_all(manifest.read_text()) if d and d.get("kind") == "Job")
        c = job["spec"]["template"]["spec"]["containers"][0]
        return list(c["command"]) + list(c.get("args", [])), c["volumeMounts"][0]["mountPath"]

    def __enter__(self) -> "CacheVolume":
        import docker

        self.host_dir = Path(tempfile.mkdtemp(prefix="divtune-e2e-cache-"))
        os.chown(self.host_dir, 0, 0)
        os.chmod(self.host_dir, 0o755)  # a fresh PVC: root's, not writable by the steps' user
        command, job_mount = self.prepare_job()
        _docker().containers.run(self.image, command, entrypoint=[], user="0:0", remove=True, network_mode="none",
                                 mounts=[docker.types.Mount(job_mount, str(self.host_dir), type="bind")])
        return self

    def mounts(self) -> list:
        import docker

        return [docker.types.Mount(self.mount_path, str(self.host_dir), type="bind")]

    def overrides(self) -> list[str]:
        return ["cluster.cache_pvc=divtune-cache", f"cluster.cache_mount_path={self.mount_path}"]

    def step_env(self) -> dict[str, str]:
        """As pipelines/cluster.py sets them where a cache PVC is mounted, and the guard's name for the volume."""
        from divtune_kfp.pipelines.cluster import cache_env

        return {**cache_env(self.mount_path), "DIVTUNE_CACHE_VOLUME": self.mount_path}

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints on the volume (trainer_state.json is written last)."""
        return sorted(self.host_dir.glob("checkpoints/*/checkpoint-*/trainer_state.json")) if self.host_dir else []

    def __exit__(self, *exc) -> None:
        import shutil

        if self.host_dir is not None:
            shutil.rmtree(self.host_dir, ignore_errors=True)


class StepKiller:
    """Kill the container of DAG step ``step`` (SIGKILL) once ``ready()`` is true; a context manager (a thread)."""

    def __init__(self, step: str, ready) -> None:
        self.step = step
        self.ready = ready
        self.killed: str | None = None
        self._stop = False

    def _find(self):
        for c in _docker().containers.list():
            args = c.attrs.get("Args") or []
            if any(a == "--function_to_execute" and i + 1 < len(args) and args[i + 1] == self.step
                   for i, a in enumerate(args)):
                return c
        return None

    def _watch(self) -> None:
        while not self._stop and self.killed is None:
            try:
                if self.ready():
                    c = self._find()
                    if c is not None:
                        c.kill()
                        self.killed = c.name
                        print(f"[e2e] killed the {self.step} step's container {c.name} (SIGKILL) after its first "
                              "checkpoint", file=sys.stderr, flush=True)
                        return
            except Exception as err:  # noqa: BLE001 - a container that ended meanwhile: look again
                print(f"[e2e] kill watcher: {err}", file=sys.stderr)
            time.sleep(1)

    def __enter__(self) -> "StepKiller":
        import threading

        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop = True
        self._thread.join(timeout=10)


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


def run_in_containers(cfg, env: dict[str, str], *, run_key: str | None = None, pipeline_root: str | None = None,
                      mounts: list | None = None, extra_hosts: dict[str, str] | None = None,
                      images: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The whole DAG under DockerRunner; each step's container gets ``env`` and nothing of this machine but the
    artifact root and ``mounts``.  Returns the run key and each step's image."""
    from kfp import local

    from divtune_kfp.pipelines.local import run_local

    images = images or step_images()
    users = {image_user(i) for i in set(images.values())}
    if len(users) != 1:
        raise RuntimeError(f"the step images run as different users {sorted(users)}: one artifact root owner needed")
    uid, gid = users.pop()
    root = Path(pipeline_root or tempfile.mkdtemp(prefix="divtune-e2e-root-"))
    root.mkdir(parents=True, exist_ok=True)
    os.chown(root, uid, gid)  # the steps' user writes the artifact root (a fresh PVC has the same problem)
    step_env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "DIVTUNE_STEP_GUARD_ROOT": str(root), **env}
    runner = local.DockerRunner(network_mode="host", environment=step_env, mounts=list(mounts or []),
                                extra_hosts=dict(extra_hosts or {}),
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


def _stage_param(cfg, key: str, stage: str, name: str) -> str | None:
    """A parameter (or, failing that, a tag) of stage run ``stage`` of pipeline run ``key``."""
    from divtune.registry import tracking

    run = tracking.find_stage_run(cfg.registry.experiment, key, stage)
    return None if run is None else run.data.params.get(name, run.data.tags.get(name))


def killed_run(cfg, env: dict[str, str], key: str, root: str, cache: CacheVolume, step: str, **kw) -> str:
    """Run the DAG with ``step`` killed after its first checkpoint; return the parent run's status (it must be
    FAILED: the exit handler's doing, since a SIGKILLed step runs no handler of its own)."""
    from divtune.registry import tracking

    with StepKiller(step, lambda: bool(cache.checkpoints())) as killer:
        try:
            run_in_containers(cfg, env, run_key=key, pipeline_root=root, **kw)
        except Exception as err:  # noqa: BLE001 - the expected failure
            print(f"[e2e] the run failed as expected: {str(err).splitlines()[0][:200]}", file=sys.stderr)
        else:
            raise RuntimeError(f"the run succeeded although its {step} step was to be killed")
    if killer.killed is None:
        raise RuntimeError(f"the {step} step was never killed (no checkpoint appeared on the cache volume)")
    status = tracking.find_pipeline_run(cfg.registry.experiment, key).info.status
    if status != "FAILED":
        raise RuntimeError(f"after the {step} step was killed, the MLflow parent run is {status}, not FAILED")
    print(f"[e2e] MLflow parent run of {key}: {status} (left by the exit handler); running it again",
          file=sys.stderr, flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m divtune_kfp.pipelines.containers", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="toy")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--mlflow-image", required=True, help="the MLflow server image (images/mlflow.Dockerfile)")
    p.add_argument("--kill-step", metavar="STEP", default=None,
                   help="kill this step's container after its first checkpoint, check the parent run is FAILED, "
                        "then re-run and check it resumed (train)")
    p.add_argument("--keep-root", action="store_true", help="keep the artifact root after the run")
    args = p.parse_args(argv)

    import shutil
    import uuid

    from divtune.config import load_config
    from divtune_kfp.pipelines.commands import _summary

    mount_path = load_config(args.preset, overrides=args.overrides).cluster.cache_mount_path
    root = tempfile.mkdtemp(prefix="divtune-e2e-root-")
    key = f"e2e-{uuid.uuid4().hex[:12]}"
    ok = False
    try:
        images = step_images()
        with TrackingServer(args.mlflow_image) as server, S3Endpoint() as s3, \
                CacheVolume(images["prepare-base"], mount_path) as cache:
            print(f"[e2e] MLflow {args.mlflow_image} at http://{MLFLOW_HOST}:{server.port} (basic auth, proxied "
                  f"artifacts); S3 at http://{S3_HOST}:{s3.port} (bucket {MODELS_BUCKET}); cache volume "
                  f"{cache.host_dir} at {mount_path} (prepared by manifests/cache-pvc.yaml's Job)", file=sys.stderr)
            cfg = load_config(args.preset, overrides=[*args.overrides, *s3.overrides(), *cache.overrides()])
            os.environ.update(server.client_env())  # this process reads the summary as the pipeline user
            env = {**server.step_env(), **s3.step_env(), **cache.step_env()}
            kw = dict(mounts=cache.mounts(), extra_hosts={MLFLOW_HOST: "127.0.0.1", S3_HOST: "127.0.0.1"},
                      images=images)
            if args.kill_step:
                killed_run(cfg, env, key, root, cache, args.kill_step, **kw)
            key, _ = run_in_containers(cfg, env, run_key=key, pipeline_root=root, **kw)
            print(_summary(cfg, key))
            print(format_step_images(images))
            if args.kill_step == "train":
                resumed = _stage_param(cfg, key, "train", "resumed_from")
                if not resumed or resumed == "none":
                    raise RuntimeError("the re-run of the killed pipeline run did not resume training from its "
                                       "checkpoint")
                print(f"killed and resumed: the train step was SIGKILLed after its first checkpoint, the parent run "
                      f"was left FAILED by the exit handler, and the re-run resumed from {Path(resumed).name}")
            source = _stage_param(cfg, key, "merge_lora", "divtune.model_uri")
            print(json.dumps({"run_key": key, "images": images, "model_source": source}, sort_keys=True),
                  file=sys.stderr)
        ok = True
    finally:
        if ok and not args.keep_root:
            shutil.rmtree(root, ignore_errors=True)
        elif not ok:
            print(f"[e2e] artifact root kept for inspection: {root}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
