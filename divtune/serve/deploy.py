"""Promotion moves the endpoint: render the champion's KServe InferenceService from its registered source, and
apply it (server-side apply through the Kubernetes API) with an optional canary.

The InferenceService in ``manifests/kserve-vllm.yaml`` is the template (one place for the runtime, probes,
resources and placement); :func:`render` fills in the registered version's ``storageUri`` and labels it with the
registered model and version.  :func:`apply` creates or updates it; with ``canary_percent`` the new version
takes that share of traffic first, and :func:`promote_canary` moves it to 100 % once a check against the live
endpoint passes.  ``divtune registry rollback --deploy`` applies the previous champion the same way.
"""

from __future__ import annotations

import copy
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from divtune.errors import DivtuneError, one_line, short

GROUP, VERSION, PLURAL, KIND = "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService"
FIELD_MANAGER = "divtune-deploy"
STORAGE_SCHEMES = ("s3://", "gs://", "pvc://", "hf://", "https://")  # what KServe's storage initializer reads
LABEL_MODEL, LABEL_VERSION = "divtune.io/registered-model", "divtune.io/version"
#: What the API server accepts: an InferenceService name is an RFC 1035 label (KServe's own rule), a namespace an
#: RFC 1123 label; both at most 63 characters.
_ISVC_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_names(name: str | None, namespace: str | None) -> None:
    """A name or namespace Kubernetes would refuse is one line here, before anything is rendered or applied."""
    if name is not None and not (len(name) <= 63 and _ISVC_NAME.match(name)):
        raise DivtuneError(f"InferenceService name {short(name)} is not valid: lowercase letters, digits and '-', "
                           "starting with a letter, at most 63 characters")
    if namespace is not None and not (len(namespace) <= 63 and _NAMESPACE.match(namespace)):
        raise DivtuneError(f"namespace {short(namespace)} is not valid: lowercase letters, digits and '-', at most "
                           "63 characters")


def template_path() -> Path:
    """``manifests/kserve-vllm.yaml`` of a source checkout; else the copy installed with the package
    (``<prefix>/share/divtune/manifests``, as :func:`divtune.config.configs_dir` finds the presets in the images)."""
    import sys
    import sysconfig

    repo = Path(__file__).resolve().parents[2] / "manifests" / "kserve-vllm.yaml"
    if repo.is_file():
        return repo
    for prefix in dict.fromkeys([sysconfig.get_path("data"), sys.prefix]):
        installed = Path(prefix) / "share" / "divtune" / "manifests" / "kserve-vllm.yaml"
        if installed.is_file():
            return installed
    return repo


def template() -> dict[str, Any]:
    """The shipped InferenceService (manifests/kserve-vllm.yaml)."""
    import yaml

    p = template_path()
    if not p.is_file():
        raise DivtuneError(f"the InferenceService template {p} is missing (a source checkout ships it)")
    docs = [d for d in yaml.safe_load_all(p.read_text()) if d and d.get("kind") == KIND]
    if len(docs) != 1:
        raise DivtuneError(f"{p} must hold exactly one {KIND}")
    return docs[0]


def champion_source(model_uri: str) -> tuple[str, str, str]:
    """``(registered model, version, storage URI)`` of ``models:/NAME@alias`` or ``models:/NAME/VERSION``."""
    from divtune.registry import models as reg

    mv = reg.lookup(model_uri)
    src = str(mv.source)
    if not src.startswith(STORAGE_SCHEMES):
        raise DivtuneError(f"{model_uri} (v{mv.version}) is stored at {src[:120]}; KServe reads object storage: "
                           "set storage.models_uri (s3://...) so registered versions live there")
    return mv.name, str(mv.version), src.rstrip("/")


def render(model_uri: str, *, name: str | None = None, namespace: str | None = None,
           canary_percent: int | None = None) -> dict[str, Any]:
    """The InferenceService serving the version behind ``model_uri``, from the template (no placeholders left)."""
    check_names(name, namespace)
    reg_name, version, storage = champion_source(model_uri)
    isvc = copy.deepcopy(template())
    meta = isvc.setdefault("metadata", {})
    if name:
        meta["name"] = name
    if namespace:
        meta["namespace"] = namespace
    meta.setdefault("labels", {}).update({LABEL_MODEL: reg_name, LABEL_VERSION: version})
    predictor = isvc["spec"]["predictor"]
    predictor["model"]["storageUri"] = storage
    if canary_percent is not None:
        if not 0 < canary_percent < 100:
            raise DivtuneError(f"--canary must be in 1..99 (percent of traffic), got {canary_percent}")
        predictor["canaryTrafficPercent"] = int(canary_percent)
    else:
        predictor.pop("canaryTrafficPercent", None)
    return isvc


def custom_objects_api():
    from divtune.train.distributed import custom_objects_api as api

    return api()


def apply(isvc: dict[str, Any], api: Any = None) -> dict[str, Any]:
    """Server-side apply of the InferenceService (created or updated; ``divtune-deploy`` owns its fields)."""
    api = api if api is not None else custom_objects_api()
    meta = isvc["metadata"]
    try:
        return api.patch_namespaced_custom_object(GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], isvc,
                                                  field_manager=FIELD_MANAGER, force=True,
                                                  _content_type="application/apply-patch+yaml")
    except Exception as exc:  # noqa: BLE001 - an API refusal or an unreachable cluster: one line
        raise DivtuneError(f"cannot apply InferenceService {meta['namespace']}/{meta['name']}: "
                           f"{one_line(exc, 200)}") from None


def wait_ready(api: Any, name: str, namespace: str, *, timeout_s: float = 1800, poll_s: float = 15,
               sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> dict:
    """Poll until the InferenceService reports ``Ready=True``; its object (``status.url`` is the endpoint)."""
    end = clock() + timeout_s
    while True:
        obj = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        conds = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
        if conds.get("Ready", {}).get("status") == "True":
            return obj
        if clock() >= end:
            why = conds.get("Ready", {}).get("message") or "no Ready condition"
            raise DivtuneError(f"InferenceService {namespace}/{name} not ready after {timeout_s:g} s: {why[:200]}")
        sleep(poll_s)


def check_endpoint(url: str, *, samples: int = 20) -> dict[str, Any]:
    """The live endpoint answers the OpenAI API and list selection: its held-out JSD and invalid rate."""
    from divtune.data.lists import heldout_examples
    from divtune.evaluate.generation import OpenAIGenerator
    from divtune.evaluate.lists import evaluate_lists

    res = evaluate_lists(OpenAIGenerator(url), heldout_examples()[:3], samples=samples, max_new_tokens=32)
    return {"jsd_mean": res["jsd_mean"], "invalid_rate": res["invalid_rate"]}


def deploy(model_uri: str, *, name: str | None = None, namespace: str | None = None, canary_percent: int | None = None,
           max_invalid_rate: float = 0.2, api: Any = None, check: Callable[[str], dict] | None = None,
           wait: Callable[..., dict] | None = None) -> dict[str, Any]:
    """Apply the champion's InferenceService; with a canary, check the live endpoint (``check``, default
    :func:`check_endpoint`) once it is ready (``wait``, default :func:`wait_ready`) and then move it to 100 %."""
    check = check or check_endpoint
    wait = wait or wait_ready
    api = api if api is not None else custom_objects_api()
    isvc = render(model_uri, name=name, namespace=namespace, canary_percent=canary_percent)
    meta = isvc["metadata"]
    apply(isvc, api)
    out: dict[str, Any] = {"inferenceservice": f"{meta['namespace']}/{meta['name']}",
                           "storage_uri": isvc["spec"]["predictor"]["model"]["storageUri"],
                           "version": meta["labels"][LABEL_VERSION], "traffic": canary_percent or 100}
    if canary_percent is None:
        return out
    obj = wait(api, meta["name"], meta["namespace"])
    url = (obj.get("status") or {}).get("url") or ""
    figures = check(url)
    out["canary_check"] = figures
    if figures["invalid_rate"] > max_invalid_rate:
        raise DivtuneError(f"canary of v{out['version']} at {canary_percent} %: invalid rate "
                           f"{figures['invalid_rate']:.3f} > {max_invalid_rate:g}; traffic stays on the previous "
                           "revision (divtune deploy again, or registry rollback)")
    promote_canary(isvc, api)
    out["traffic"] = 100
    return out


def promote_canary(isvc: dict[str, Any], api: Any = None) -> dict[str, Any]:
    """Move the canary to all traffic: the same InferenceService without ``canaryTrafficPercent``."""
    full = copy.deepcopy(isvc)
    full["spec"]["predictor"].pop("canaryTrafficPercent", None)
    return apply(full, api)


def has_kube_credentials() -> bool:
    """A kubeconfig or an in-cluster service account is at hand."""
    kubeconfig = os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    return Path(kubeconfig.split(os.pathsep)[0]).is_file() or Path(
        "/var/run/secrets/kubernetes.io/serviceaccount/token").is_file()
