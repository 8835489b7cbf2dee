"""Images and the container run, checked without Docker: the compiled spec's image refs follow the registry
variable, every Dockerfile builds a CPU and a GPU variant from one build argument, the lock files pin torch, vLLM,
transformers and TRL in versions that go together, configs/ ships with the package, the manifest's MLflow server runs
the project's image with authentication and allowed hosts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
VARIANT_IMAGES = ("trainer", "eval", "serve")


def _lock(name: str) -> dict[str, Version]:
    text = (IMAGES / f"requirements-{name}.lock").read_text()
    return {m.group(1).lower(): Version(m.group(2)) for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


def _project_requirements() -> list[Requirement]:
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in proj["dependencies"]]


def _spec_images(env: dict[str, str], tmp_path: Path) -> set[str]:
    out = tmp_path / "spec.yaml"
    subprocess.run([sys.executable, "-m", "divtune.cli", "compile", "--preset", "toy", "-o", str(out)],
                   check=True, env={**os.environ, **env}, capture_output=True, cwd=tmp_path)
    spec = next(d for d in yaml.safe_load_all(out.read_text()) if d and "deploymentSpec" in d)
    return {ex["container"]["image"] for ex in spec["deploymentSpec"]["executors"].values()}


def test_compiled_image_refs_follow_the_registry_variable(tmp_path):
    images = _spec_images({"DIVTUNE_REGISTRY": "registry.example.com:5000/team", "DIVTUNE_IMAGE_TAG": "abc123"},
                          tmp_path)
    assert images == {"registry.example.com:5000/team/divtune-trainer:abc123",
                      "registry.example.com:5000/team/divtune-eval:abc123"}


def test_makefile_passes_registry_and_tag_to_build_and_compile():
    mk = (ROOT / "Makefile").read_text()
    assert re.search(r"^compile: export DIVTUNE_REGISTRY = \$\(REGISTRY\)$", mk, re.M)
    assert re.search(r"^compile: export DIVTUNE_IMAGE_TAG = \$\(IMAGE_TAG\)$", mk, re.M)
    images_recipe = mk.split("\nimages:\n", 1)[1].split("\n\n", 1)[0]
    assert "--registry $(REGISTRY)" in images_recipe and "--tag $(IMAGE_TAG)" in images_recipe
    assert re.search(r"^push: images$", mk, re.M) and re.search(r"^e2e: ", mk, re.M)
    assert "git rev-parse" in mk.split("\nTAG ?=", 1)[1].split("\n", 1)[0]


@pytest.mark.parametrize("name", VARIANT_IMAGES)
def test_dockerfile_has_a_cpu_and_a_gpu_variant(name):
    text = (IMAGES / f"{name}.Dockerfile").read_text()
    assert re.search(r"^ARG BASE=python:3\.11-slim-bookworm$", text, re.M), "Python 3.11 on Debian bookworm"
    assert re.findall(r"^FROM \$\{BASE\}", text, re.M), "the base is a build argument (make e2e: debootstrap)"
    assert re.search(r"^ARG VARIANT=gpu$", text, re.M)
    assert "requirements-${VARIANT}.lock" in text and "--require-hashes" in text
    for variant in ("cpu", "gpu"):
        assert (IMAGES / f"requirements-{variant}.lock").is_file()
    user = re.findall(r"^USER\s+(\S+)", text, re.M)[-1]
    assert re.fullmatch(r"[1-9]\d*:\d+", user), f"numeric non-root user (runAsNonRoot can check it), got {user}"
    if name != "serve":
        assert not re.search(r"^ENTRYPOINT", text, re.M), "KFP gives the whole command line"


def test_mlflow_image_pins_its_server():
    text = (IMAGES / "mlflow.Dockerfile").read_text()
    assert "requirements-mlflow.lock" in text and "--require-hashes" in text
    assert re.findall(r"^USER\s+(\S+)", text, re.M)[-1] == "1000:1000"
    lock = _lock("mlflow")
    project_mlflow = next(r for r in _project_requirements() if r.name == "mlflow")
    assert lock["mlflow"] in project_mlflow.specifier and "psycopg2-binary" in lock and "boto3" in lock


def test_gpu_lock_pins_a_compatible_stack():
    lock = _lock("gpu")
    for name in ("torch", "vllm", "transformers", "trl", "peft", "accelerate"):
        assert name in lock, name
    trl_src = (Path(__import__("trl").__file__).parent / "import_utils.py").read_text()
    low, high = re.search(r'Version\("([\d.]+)"\) <= _vllm_base_version <= Version\("([\d.]+)"\)', trl_src).groups()
    assert Version(low) <= lock["vllm"] <= Version(high), f"TRL supports vLLM {low}-{high}"
    assert not lock["torch"].local, "the GPU torch is PyPI's (CUDA) wheel"
    assert any(n.startswith("nvidia-") for n in lock), "CUDA libraries come pinned from PyPI"
    for req in _project_requirements():
        assert req.name.lower() in lock, req.name
        assert lock[req.name.lower()] in req.specifier, f"{req.name} {lock[req.name.lower()]} vs pyproject {req}"


def test_cpu_lock_is_the_dev_venvs_stack():
    """The CPU images compute what `make demo` computes: the same torch, transformers, TRL, peft as this venv."""
    from importlib.metadata import version

    lock = _lock("cpu")
    assert "vllm" not in lock and not any(n.startswith("nvidia-") for n in lock)
    assert lock["torch"].local == "cpu"
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "numpy"):
        assert lock[name] == Version(version(name)), name
    for req in _project_requirements():
        assert lock[req.name.lower()] in req.specifier, req.name


@pytest.mark.parametrize("name", ["cpu", "gpu", "mlflow"])
def test_every_locked_requirement_has_hashes(name):
    text = (IMAGES / f"requirements-{name}.lock").read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1])
    for e in entries:
        if "==" in e:
            assert "--hash=sha256:" in e, e.splitlines()[0]


def test_configs_ship_with_the_package():
    files = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["data-files"]
    shipped = {Path(target).relative_to("share/divtune/configs") / Path(f).name
               for target, globs in files.items() if target.startswith("share/divtune/configs")
               for g in globs for f in ROOT.glob(g)}
    assert files["share/divtune/manifests"] == ["manifests/kserve-vllm.yaml"]  # the deploy step's template
    on_disk = {p.relative_to(ROOT / "configs") for p in (ROOT / "configs").rglob("*") if p.is_file()}
    assert on_disk == shipped, sorted(map(str, on_disk ^ shipped))


def test_configs_dir_finds_the_installed_copy(tmp_path, monkeypatch):
    """Outside a source checkout (a wheel installed in an image), presets come from <prefix>/share/divtune/configs."""
    import sysconfig

    from divtune.config import load

    site = tmp_path / "site-packages"
    (site / "divtune" / "config").mkdir(parents=True)
    (site / "configs").mkdir()  # a stray top-level configs/ beside the packages is not ours
    installed = tmp_path / "prefix" / "share" / "divtune" / "configs"
    installed.mkdir(parents=True)
    (installed / "toy.yaml").write_text("name: toy\n")
    monkeypatch.delenv("DIVTUNE_CONFIGS", raising=False)
    monkeypatch.setattr(load, "__file__", str(site / "divtune" / "config" / "load.py"))
    monkeypatch.setattr(sysconfig, "get_path", lambda name, *a, **k: str(tmp_path / "prefix"))
    assert load.configs_dir() == installed
    assert load.list_presets() == ["toy"]


def test_manifest_runs_the_projects_mlflow_image_with_auth():
    docs = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "manifests" / "mlflow-server.yaml").read_text()) if d}
    c = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert re.fullmatch(r"[^/]+/divtune/divtune-mlflow:\S+", c["image"]), c["image"]
    assert "command" not in c, "the image's entrypoint starts the basic-auth app"
    args = " ".join(c["args"])
    assert "pip install" not in args
    hosts = re.search(r"--allowed-hosts=(\S+)", args).group(1).split(",")
    svc = docs["Service"]["metadata"]
    assert f"{svc['name']}.{svc['namespace']}.svc.cluster.local:{docs['Service']['spec']['ports'][0]['port']}" in hosts
    env = {e["name"]: e for e in c["env"]}
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY",
                 "MLFLOW_PIPELINE_USERNAME", "MLFLOW_PIPELINE_PASSWORD"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
    admin = env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    pipeline = env["MLFLOW_PIPELINE_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    assert admin != pipeline, "the pods' credentials are not the admin's"


def test_entrypoint_turns_auth_on():
    text = (IMAGES / "mlflow-entrypoint.py").read_text()
    assert '"--app-name", "basic-auth"' in text


def test_step_guard_is_valid_sh():
    from divtune_kfp.pipelines.containers import GUARD

    subprocess.run(["sh", "-n", "-c", GUARD], check=True)
    assert ".divtune-private-" in GUARD and "/proc/self/mountinfo" in GUARD


def test_dockerignore_keeps_the_context_small():
    lines = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".git"} <= lines
