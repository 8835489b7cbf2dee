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


# --------------------------------------------------------------------------------------
# the pipeline's deploy step (stages.deploy behind components/deploy.py, in the DAG behind dsl.If)
# --------------------------------------------------------------------------------------


def _promoted(tmp_path, source: str, *overrides: str):
    """A registered version as promote leaves it (its summary file), and a config with ``overrides``."""
    import json

    from divtune import stages
    from divtune.config import load_config

    name, v = _registered(source)
    cfg = load_config("toy", overrides=[f"registry.model_name={name}", "registry.experiment=deploy-step",
                                        *overrides])
    key = f"dep-run-{uuid.uuid4().hex[:8]}"
    stages.open_run(cfg.to_yaml(), key)
    summary = tmp_path / "decision.json"
    summary.write_text(json.dumps({"registered_model": name, "version": v, "decision": {"promote": True}}))
    return cfg, key, summary, v


def test_deploy_step_renders_and_records_the_champion_without_applying(tmp_path, monkeypatch):
    from divtune import stages
    from divtune.registry import tracking

    cfg, key, summary, v = _promoted(tmp_path, "s3://divtune-models/m/run-7")
    monkeypatch.setattr(dep, "custom_objects_api", lambda: pytest.fail("deploy.enabled is false: nothing applied"))
    info = stages.deploy(cfg.to_yaml(), key, str(summary), str(tmp_path / "out" / "manifest"))
    assert info["status"] == "rendered" and "deploy.enabled" in info["reason"]
    isvc = yaml.safe_load((tmp_path / "out" / "manifest").read_text())
    assert crd_errors(isvc) == []
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://divtune-models/m/run-7"
    assert isvc["metadata"]["labels"][dep.LABEL_VERSION] == v
    parent = tracking.find_pipeline_run(cfg.registry.experiment, key)
    c = tracking.client()
    assert parent.data.tags["divtune.deploy"] == "rendered"
    assert yaml.safe_load(open(c.download_artifacts(parent.info.run_id, "deploy/inferenceservice.yaml"))) == isvc


def test_deploy_step_applies_with_a_canary_when_enabled_and_credentials_are_at_hand(tmp_path, monkeypatch):
    from divtune import stages

    cfg, key, summary, v = _promoted(tmp_path, "s3://b/m/run-8", "deploy.enabled=true", "deploy.canary_percent=20",
                                     "deploy.namespace=serving", "deploy.isvc_name=toy-champion")
    api = FakeAPI()
    monkeypatch.setattr(dep, "custom_objects_api", lambda: api)
    monkeypatch.setattr(dep, "check_endpoint", lambda url, **kw: {"jsd_mean": 0.1, "invalid_rate": 0.0})
    monkeypatch.setattr(dep, "has_kube_credentials", lambda: False)
    info = stages.deploy(cfg.to_yaml(), key, str(summary), str(tmp_path / "m1"))
    assert info["status"] == "rendered" and "no Kubernetes credentials" in info["reason"] and not api.applied
    monkeypatch.setattr(dep, "has_kube_credentials", lambda: True)
    info = stages.deploy(cfg.to_yaml(), key, str(summary), str(tmp_path / "m2"))
    assert info["status"] == "applied" and info["inferenceservice"] == "serving/toy-champion"
    assert [a["spec"]["predictor"].get("canaryTrafficPercent") for a in api.applied] == [20, None]
    assert info["traffic"] == 100 and info["version"] == v


def test_deploy_step_on_a_local_artifact_store(tmp_path):
    """make demo keeps models in MLflow's local store, which KServe cannot read: recorded, not an error; with
    deploy.enabled it is one."""
    from divtune import stages

    cfg, key, summary, _ = _promoted(tmp_path, str(tmp_path / "mlruns" / "model"))
    info = stages.deploy(cfg.to_yaml(), key, str(summary), str(tmp_path / "manifest"))
    assert info["status"] == "not-rendered" and "KServe reads object storage" in info["reason"]
    assert "not rendered" in (tmp_path / "manifest").read_text()
    cfg, key, summary, _ = _promoted(tmp_path, str(tmp_path / "mlruns" / "model2"), "deploy.enabled=true")
    with pytest.raises(DivtuneError, match="KServe reads object storage"):
        stages.deploy(cfg.to_yaml(), key, str(summary), str(tmp_path / "manifest2"))


def test_names_kubernetes_refuses_are_one_line_before_rendering():
    name, _ = _registered("s3://b/m/run-9")
    with pytest.raises(DivtuneError, match="InferenceService name 'Toy_Champion' is not valid"):
        dep.render(f"models:/{name}@champion", name="Toy_Champion")
    with pytest.raises(DivtuneError, match="namespace 'Team A' is not valid"):
        dep.render(f"models:/{name}@champion", namespace="Team A")


def test_deploy_runs_in_kfp_local_only_when_promote_says_promote(tmp_path):
    """The DAG's wiring, through kfp.local: a step standing in for promote (its decision output and summary
    artifact) and the real deploy component behind the same ``dsl.If``; rejected, deploy does not run."""
    import json

    from kfp import local

    cfg, key, summary, v = _promoted(tmp_path, "s3://b/m/run-10")
    import importlib.util

    # KFP reads real annotations and the source: a module of its own, without `from __future__ import annotations`
    (tmp_path / "deploy_flow.py").write_text(FLOW)
    spec = importlib.util.spec_from_file_location("deploy_flow", tmp_path / "deploy_flow.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    flow = mod.flow
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    args = dict(config_yaml=cfg.to_yaml(), run_key=key, summary_json=summary.read_text())
    flow(verdict="reject", **args)
    assert not list((tmp_path / "root").glob("**/deploy/**/manifest"))
    flow(verdict="promote", **args)
    [manifest] = list((tmp_path / "root").glob("**/deploy/**/manifest"))
    isvc = yaml.safe_load(manifest.read_text())
    assert isvc["metadata"]["labels"][dep.LABEL_VERSION] == v and crd_errors(isvc) == []
    assert json.loads(summary.read_text())["version"] == v


FLOW = """
from kfp import dsl

from divtune_kfp.components.deploy import deploy


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def decide(verdict: str, summary_json: str, decision: dsl.Output[dsl.Artifact]) -> str:
    with open(decision.path, "w", encoding="utf-8") as f:
        f.write(summary_json)
    return verdict


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def closing(status: dsl.PipelineTaskFinalStatus) -> str:
    return status.state


@dsl.pipeline(name="deploy-condition")
def flow(verdict: str, config_yaml: str, run_key: str, summary_json: str):
    with dsl.ExitHandler(closing(), name="retrain"):  # nested as in pipelines/retrain.py
        gate = decide(verdict=verdict, summary_json=summary_json)
        with dsl.If(gate.outputs["Output"] == "promote", name="champion-moved"):
            deploy(config_yaml=config_yaml, run_key=run_key, decision=gate.outputs["decision"])
"""
