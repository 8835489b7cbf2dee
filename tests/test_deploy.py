"""Promotion moves the endpoint: the champion's InferenceService rendered from its registered source (validated
against the vendored KServe CRD), applied, canaried and rolled back against a fake Kubernetes API."""

from __future__ import annotations

import uuid

import pytest
import yaml

from divtune.cli import main
from divtune.errors import DivtuneError
from divtune.registry import models as reg
from divtune.serve import deploy as dep
from test_crds import crd_errors


def _registered(source: str) -> tuple[str, str]:
    name = f"dep-{uuid.uuid4().hex[:8]}"
    mv = reg.register_version(name, source, None, uuid.uuid4().hex, {"divtune.decision": "promote"})
    reg.set_alias(name, reg.CHAMPION, mv.version)
    return name, str(mv.version)


def test_dry_run_prints_a_valid_inferenceservice_for_the_champion(capsys):
    name, v = _registered("s3://divtune-models/merged/m/run-1")
    assert main(["deploy", "--model", f"models:/{name}@champion", "--dry-run", "--namespace", "team"]) == 0
    isvc = yaml.safe_load(capsys.readouterr().out)
    assert crd_errors(isvc) == []
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://divtune-models/merged/m/run-1"
    assert isvc["metadata"]["namespace"] == "team" and isvc["metadata"]["labels"][dep.LABEL_VERSION] == v
    assert "RUN_KEY" not in yaml.safe_dump(isvc)
    canary = dep.render(f"models:/{name}@champion", canary_percent=10)
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 10 and crd_errors(canary) == []


def test_a_source_kserve_cannot_read_is_refused():
    name, _ = _registered("/home/someone/mlruns/1/abc/artifacts/model")
    with pytest.raises(DivtuneError, match="KServe reads object storage"):
        dep.render(f"models:/{name}@champion")


class FakeAPI:
    def __init__(self, ready=True):
        self.applied: list[dict] = []
        self.ready = ready

    def patch_namespaced_custom_object(self, group, version, ns, plural, name, body, **kw):
        assert (group, version, plural) == (dep.GROUP, dep.VERSION, dep.PLURAL)
        assert kw["_content_type"] == "application/apply-patch+yaml" and kw["field_manager"] == dep.FIELD_MANAGER
        self.applied.append(yaml.safe_load(yaml.safe_dump(body)))
        return body

    def get_namespaced_custom_object(self, group, version, ns, plural, name):
        status = "True" if self.ready else "False"
        return {"status": {"url": "http://isvc.example/", "conditions": [{"type": "Ready", "status": status}]}}


def test_canary_then_full_traffic_after_the_live_check():
    name, v = _registered("s3://b/m/1")
    api = FakeAPI()
    out = dep.deploy(f"models:/{name}@champion", canary_percent=10, api=api,
                     check=lambda url: {"jsd_mean": 0.1, "invalid_rate": 0.0})
    assert [a["spec"]["predictor"].get("canaryTrafficPercent") for a in api.applied] == [10, None]
    assert out["traffic"] == 100 and out["version"] == v


def test_a_failing_canary_keeps_traffic_where_it_was():
    name, _ = _registered("s3://b/m/2")
    api = FakeAPI()
    with pytest.raises(DivtuneError, match="traffic stays on the previous revision"):
        dep.deploy(f"models:/{name}@champion", canary_percent=10, api=api,
                   check=lambda url: {"jsd_mean": 0.9, "invalid_rate": 0.9})
    assert len(api.applied) == 1  # the canary only; never promoted to 100 %


def test_rollback_moves_traffic_back(monkeypatch):
    name, v1 = _registered("s3://b/m/v1")
    mv2 = reg.register_version(name, "s3://b/m/v2", None, uuid.uuid4().hex,
                               {"divtune.decision": "promote", reg.PREVIOUS_CHAMPION_TAG: v1})
    reg.set_alias(name, reg.CHAMPION, mv2.version)
    api = FakeAPI()
    monkeypatch.setattr(dep, "custom_objects_api", lambda: api)
    assert main(["registry", "rollback", "--name", name, "--deploy"]) == 0
    assert api.applied[-1]["spec"]["predictor"]["model"]["storageUri"] == "s3://b/m/v1"
