"""Container images: every requirement a Dockerfile installs matches the project's pins; non-root user."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = sorted((ROOT / "images").glob("*.Dockerfile"))


def _project_pins() -> dict[str, str]:
    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(proj["dependencies"]) + [r for extra in proj["optional-dependencies"].values() for r in extra]
    return {Requirement(r).name.lower(): str(Requirement(r).specifier) for r in reqs}


def _pip_args(text: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for m in re.finditer(r"pip install ([^&\n]+)", joined):
        out += [a for a in shlex.split(m.group(1)) if not a.startswith("-")]
    return out


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_pins_match_pyproject(path):
    pins = _project_pins()
    text = path.read_text()
    args = _pip_args(text)
    assert args, f"{path.name} installs nothing"
    for a in args:
        if a.startswith(".") or a.startswith("/"):
            continue  # the project itself: its pins are pyproject's by construction
        req = Requirement(a)
        assert req.name.lower() in pins, f"{path.name}: {a} is not a project dependency"
        assert str(req.specifier) == pins[req.name.lower()], f"{path.name}: {a} vs pyproject {pins[req.name.lower()]}"
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), f"{path.name} must end as a non-root user"


def test_every_component_image_has_a_dockerfile():
    """The three images the components run in (configs/images.yaml; which spec names which ref:
    tests/test_pipeline.py, tests/test_containers.py) are each built by a Dockerfile here."""
    for which, name in (("trainer", "trainer"), ("evaluator", "eval"), ("server", "serve")):
        assert (ROOT / "images" / f"{name}.Dockerfile").is_file(), which


def _lock_versions(variant: str) -> dict[str, str]:
    text = (ROOT / "images" / f"requirements-{variant}.lock").read_text()
    return {m.group(1).lower().replace("_", "-"): m.group(2)
            for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", text, re.M)}


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_every_project_requirement_is_locked_within_its_pin(variant):
    """What the images install comes from the lock files (pip --require-hashes): each of the project's runtime
    requirements (and, for the GPU images, the gpu extra) must be in the lock, at a version pyproject allows."""
    from packaging.version import Version

    proj = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in proj["dependencies"]]
    if variant == "gpu":
        reqs += [Requirement(r) for r in proj["optional-dependencies"]["gpu"]]
    lock = _lock_versions(variant)
    for req in reqs:
        if req.marker is not None and not req.marker.evaluate({"platform_system": "Linux", "sys_platform": "linux"}):
            continue
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"requirements-{variant}.lock lacks {req.name}"
        version = Version(lock[name].split("+")[0])
        assert req.specifier.contains(version, prereleases=True), \
            f"requirements-{variant}.lock has {req.name}=={lock[name]}, outside pyproject's {req.specifier}"
