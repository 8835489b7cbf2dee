"""Kubernetes manifests, validated offline: core kinds against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict); custom resources against their CRD schemas in tests/test_crds.py; Secrets only
ever referenced."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
K8S_VERSION = "1.30"
CRD_KINDS = {("serving.kserve.io/v1alpha1", "ServingRuntime"), ("serving.kserve.io/v1beta1", "InferenceService"),
             ("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime")}  # schemas: tests/test_crds.py


def _docs():
    for p in sorted(MANIFESTS.glob("*.yaml")):
        for i, d in enumerate(yaml.safe_load_all(p.read_text())):
            if d:
                yield pytest.param(d, id=f"{p.name}:{i}:{d.get('kind')}")


@pytest.mark.parametrize("doc", list(_docs()))
def test_manifest_is_valid(doc):
    import kubernetes_validate

    assert doc["metadata"]["name"] and doc["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "divtune"
    assert doc["kind"] != "Secret", "secrets are referenced, never committed"
    if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
        spec = doc["spec"]
        if doc["kind"] == "ServingRuntime":
            c = spec["containers"][0]
            assert c["resources"]["limits"]["nvidia.com/gpu"] and any(v["name"] == "dshm" for v in spec["volumes"])
        elif doc["kind"] == "InferenceService":
            m = spec["predictor"]["model"]
            assert m["storageUri"].startswith("s3://") and m["runtime"] == "divtune-vllm"
            assert spec["predictor"]["tolerations"]
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_mlflow_server_uses_postgres_s3_and_serves_artifacts():
    docs = {d["kind"]: d for d in yaml.safe_load_all((MANIFESTS / "mlflow-server.yaml").read_text()) if d}
    args = " ".join(docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["args"])
    assert "--serve-artifacts" in args and "postgresql://" in args and "s3://" in args
