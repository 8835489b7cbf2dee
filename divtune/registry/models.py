"""The MLflow model registry: register a merged model directory, read and move aliases, download.

A candidate version is created in one call with every tag it will ever carry (its run key,
decision, checks and metrics), so a failure can never leave a version without its decision;
re-running the promote step of the same pipeline run finds that version by its run key instead
of registering a second one.  Aliases move only after the version exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from divtune.errors import DivtuneError, one_line, short
from divtune.registry import tracking

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION_TAG = "divtune.previous_champion"
RUN_KEY_TAG = tracking.RUN_KEY_TAG


def _mlflow_exc():
    from mlflow.exceptions import MlflowException

    return MlflowException


_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # the latter: "alias ... not found"


def _reraise_unless_missing(exc: Exception) -> None:
    """Only "no such model / version / alias" means absent; an unreachable or failing store
    (``INTERNAL_ERROR`` after MLflow's retries, ...) propagates instead of reading as "absent"
    (which would misreport a typo, or let a retried promotion register a second version)."""
    if getattr(exc, "error_code", None) not in _NOT_FOUND:
        raise exc


def ensure_registered_model(name: str) -> None:
    if not model_exists(name):
        tracking.client().create_registered_model(name, tags={"divtune": "true"})


def version_for_run_key(name: str, run_key: str):
    """The version registered by pipeline run ``run_key``, if any (idempotent promotion)."""
    c = tracking.client()
    try:
        found = c.search_model_versions(f"name = '{name}' and tags.`{RUN_KEY_TAG}` = '{run_key}'")
    except _mlflow_exc() as exc:
        _reraise_unless_missing(exc)
        return None
    return found[0] if found else None


def get_alias(name: str, alias: str):
    """The version behind ``name@alias``, or ``None`` if the model or alias does not exist."""
    if not model_exists(name):
        return None
    c = tracking.client()
    try:
        return c.get_model_version_by_alias(name, alias)
    except _mlflow_exc() as exc:
        _reraise_unless_missing(exc)
        return None


def model_exists(name: str) -> bool:
    """By search, not by get: behind MLflow's basic-auth app a user who is not an admin gets 403 (not 404) for
    a name that is not registered yet, while a search simply finds nothing."""
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    found = tracking.client().search_registered_models(filter_string=f"name = '{escaped}'", max_results=10)
    return any(m.name == name for m in found)


def require_model(name: str) -> None:
    """A one-line DivtuneError naming the store when ``name`` is not a registered model."""
    if not model_exists(name):
        raise DivtuneError(f"registered model {name!r} does not exist in {tracking.paths.tracking_uri()}")


def register_version(name: str, source: str, run_id: str, run_key: str, tags: Mapping[str, str],
                     description: str = ""):
    """Create (or find, for the same ``run_key``) the model version for ``source``."""
    existing = version_for_run_key(name, run_key)
    if existing is not None:
        return existing
    ensure_registered_model(name)
    all_tags = {RUN_KEY_TAG: run_key, **{k: str(v)[:5000] for k, v in tags.items()}}
    return tracking.client().create_model_version(name, source, run_id=run_id, tags=all_tags,
                                                  description=description)


def set_alias(name: str, alias: str, version: str | int) -> None:
    tracking.client().set_registered_model_alias(name, alias, str(version))


def version_tags(name: str, version: str | int) -> dict[str, str]:
    return dict(tracking.client().get_model_version(name, str(version)).tags)


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` -> (name, alias, version)."""
    if not uri.startswith("models:/"):
        raise DivtuneError(f"not a registry URI (expected models:/NAME@alias or models:/NAME/VERSION): {uri}")
    rest = uri[len("models:/") :]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if not name or not alias:
            raise DivtuneError(f"malformed registry URI: {uri}")
        return name, alias, None
    if "/" in rest:
        name, version = rest.rsplit("/", 1)
        if not name or not (version.isascii() and version.isdigit()):
            raise DivtuneError(f"malformed registry URI: {short(uri, 120, use_repr=False)}")
        if not 1 <= int(version) < 2**31:  # the registry's version numbers are positive 32-bit integers
            raise DivtuneError(f"registry URI {short(uri, 120, use_repr=False)}: version {int(version)} is out of range")
        return name, None, version
    raise DivtuneError(f"registry URI needs @alias or /version: {uri}")


def lookup(uri: str):
    """The ModelVersion a ``models:/`` URI names, or a one-line DivtuneError."""
    name, alias, version = parse_model_uri(uri)
    c = tracking.client()
    require_model(name)
    try:
        if alias is not None:
            return c.get_model_version_by_alias(name, alias)
        return c.get_model_version(name, version)
    except _mlflow_exc() as exc:
        _reraise_unless_missing(exc)
        what = f"alias {alias!r}" if alias is not None else f"version {version}"
        raise DivtuneError(f"registered model {name!r} has no {what}") from None


def download_model_version(uri: str, dst: str | os.PathLike | None = None) -> Path:
    """Fetch the files of the version behind ``uri`` (through MLflow's artifact layer)."""
    import mlflow

    mv = lookup(uri)
    base = Path(dst) if dst is not None else Path(tempfile.mkdtemp(prefix="divtune-model-"))
    base.mkdir(parents=True, exist_ok=True)
    if str(mv.source).startswith("s3://"):
        from divtune import storage

        return storage.download_dir(mv.source, base)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=mv.source, dst_path=str(base))
    except Exception as exc:  # noqa: BLE001 - any store error becomes one line
        shutil.rmtree(base, ignore_errors=True) if dst is None else None
        raise DivtuneError(f"cannot download {uri} from {mv.source}: {one_line(exc, 200)}") from None
    return Path(local)


def version_summary(mv: Any) -> dict[str, Any]:
    return {
        "name": mv.name,
        "version": str(mv.version),
        "aliases": list(getattr(mv, "aliases", []) or []),
        "source": mv.source,
        "run_id": mv.run_id,
        "tags": dict(mv.tags),
    }


ROLLED_BACK_TAG = "divtune.rolled_back_to"


def champion_lineage(name: str) -> list[str]:
    """Versions that held ``champion``, newest first, following each version's previous-champion tag."""
    c = tracking.client()
    current = get_alias(name, CHAMPION)
    chain: list[str] = []
    v = str(current.version) if current is not None else ""
    while v and v not in chain:
        chain.append(v)
        try:
            v = c.get_model_version(name, v).tags.get(PREVIOUS_CHAMPION_TAG, "")
        except _mlflow_exc() as exc:
            _reraise_unless_missing(exc)
            break
    return chain


def rollback(name: str) -> dict[str, str]:
    """Move ``champion`` back to the version it replaced; tag the demoted version.  Nothing changes on error."""
    require_model(name)
    current = get_alias(name, CHAMPION)
    if current is None:
        raise DivtuneError(f"registered model {name!r} has no champion to roll back")
    prev = current.tags.get(PREVIOUS_CHAMPION_TAG, "")
    if not prev:
        raise DivtuneError(f"{name} v{current.version} has no previous champion to roll back to")
    c = tracking.client()
    try:
        c.get_model_version(name, prev)
    except _mlflow_exc() as exc:
        _reraise_unless_missing(exc)
        raise DivtuneError(f"previous champion v{prev} of {name} no longer exists") from None
    c.set_registered_model_alias(name, CHAMPION, prev)
    c.set_model_version_tag(name, str(current.version), ROLLED_BACK_TAG, prev)
    return {"registered_model": name, "demoted": str(current.version), "champion": prev}
