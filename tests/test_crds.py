"""Custom resources (KServe ServingRuntime/InferenceService, Kubeflow Trainer TrainJob/ClusterTrainingRuntime)
validated offline against the upstream CRD schemas vendored in ``manifests/crds/`` (see its README).

A CRD's ``openAPIV3Schema`` is a Kubernetes *structural* schema; it becomes a JSON Schema (draft 4) with the
Kubernetes extensions handled: ``x-kubernetes-int-or-string`` (integer or string), ``nullable``,
``x-kubernetes-preserve-unknown-fields`` (unknown keys kept), ``x-kubernetes-embedded-resource`` (apiVersion,
kind, metadata allowed), ``x-kubernetes-list-type: map|set`` (unique keys / items).  Everywhere else an
unknown field is an error, as ``kubectl apply --validate=strict`` reports it (the API server would otherwise
prune it silently).  CEL rules (``x-kubernetes-validations``) need a CEL evaluator and are not checked here.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

MANIFESTS = Path(__file__).resolve().parent.parent / "manifests"
CRDS = MANIFESTS / "crds"
SCHEMAS = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "serving.kserve.io_servingruntimes.v1alpha1.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "serving.kserve.io_inferenceservices.v1beta1.json",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainer.kubeflow.org_trainjobs.v1alpha1.json",
    ("trainer.kubeflow.org/v1alpha1", "ClusterTrainingRuntime"):
        "trainer.kubeflow.org_clustertrainingruntimes.v1alpha1.json",
}
CR_GROUPS = ("kserve.io", "kubeflow.org")  # a CR of these groups must have a vendored schema
RFC1035 = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"

# ---------------------------------------------------------------------------------------------------------
# structural schema -> JSON Schema
# ---------------------------------------------------------------------------------------------------------

_DROP = {"description", "default", "example", "externalDocs", "nullable", "x-kubernetes-validations",
         "x-kubernetes-int-or-string", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
         "x-kubernetes-map-type"}


def to_json_schema(node: dict[str, Any], *, in_junctor: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in _DROP:
            continue
        if k in ("properties", "patternProperties"):
            out[k] = {n: to_json_schema(s) for n, s in v.items()}
        elif k == "items":
            out[k] = [to_json_schema(s) for s in v] if isinstance(v, list) else to_json_schema(v)
        elif k == "additionalProperties":
            out[k] = to_json_schema(v) if isinstance(v, dict) else v
        elif k in ("allOf", "anyOf", "oneOf"):
            out[k] = [to_json_schema(s, in_junctor=True) for s in v]
        elif k == "not":
            out[k] = to_json_schema(v, in_junctor=True)
        else:  # type, enum, pattern, min/max*, required, format, x-kubernetes-list-type/-list-map-keys
            out[k] = v
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        if "anyOf" not in out:
            out["type"] = ["integer", "string"]
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        props.setdefault("apiVersion", {"type": "string"})
        props.setdefault("kind", {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    if ("properties" in node and "additionalProperties" not in node and not in_junctor
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False  # an unknown (e.g. misspelled) field is an error, not pruned
    return out


def _list_type(validator, list_type, instance, schema):
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        seen = [json.dumps(i, sort_keys=True) for i in instance]
        if len(seen) != len(set(seen)):
            yield jsonschema.ValidationError(f"x-kubernetes-list-type set: duplicate items in {instance!r}")
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        tuples = [tuple(json.dumps(i.get(k)) for k in keys) for i in instance if isinstance(i, dict)]
        dup = sorted({t for t in tuples if tuples.count(t) > 1})
        if dup:
            yield jsonschema.ValidationError(f"x-kubernetes-list-type map: duplicate {'/'.join(keys)} {dup[0]}")


_Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type})


@functools.lru_cache(maxsize=None)
def validator_for(api_version: str, kind: str):
    schema = json.loads((CRDS / SCHEMAS[(api_version, kind)]).read_text())
    return _Validator(to_json_schema(schema))


def crd_errors(doc: dict[str, Any]) -> list[str]:
    """Every schema violation of one custom resource, as ``path: message`` lines."""
    v = validator_for(doc["apiVersion"], doc["kind"])
    errs = sorted(v.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errs]


# ---------------------------------------------------------------------------------------------------------
# the manifests we ship, and the TrainJob the pipeline submits
# ---------------------------------------------------------------------------------------------------------


def _crs():
    for p in sorted(MANIFESTS.glob("*.yaml")):
        for i, d in enumerate(yaml.safe_load_all(p.read_text())):
            if d and d["apiVersion"].split("/")[0].endswith(CR_GROUPS):
                yield pytest.param(d, id=f"{p.name}:{i}:{d['kind']}")


def test_vendored_schemas_are_the_crd_versions_we_use():
    for (api_version, kind), name in SCHEMAS.items():
        schema = json.loads((CRDS / name).read_text())
        assert schema["type"] == "object" and {"apiVersion", "kind", "metadata", "spec"} <= set(schema["properties"])
        assert name.endswith(f".{api_version.split('/')[1]}.json") and kind
    assert {p.name for p in CRDS.glob("*.json")} == set(SCHEMAS.values())
    readme = (CRDS / "README.md").read_text()
    assert all(name in readme for name in SCHEMAS.values()) and readme.count("Apache-2.0") >= 4


@pytest.mark.parametrize("doc", list(_crs()))
def test_custom_resources_match_their_crd_schema(doc):
    assert (doc["apiVersion"], doc["kind"]) in SCHEMAS, f"no vendored CRD schema for {doc['apiVersion']} {doc['kind']}"
    assert crd_errors(doc) == []


def test_every_kind_with_a_schema_is_shipped_or_generated():
    kinds = {(d.values[0]["apiVersion"], d.values[0]["kind"]) for d in _crs()}
    assert kinds | {("trainer.kubeflow.org/v1alpha1", "TrainJob")} == set(SCHEMAS)


def _trainjob(preset: str, **kw):
    from divtune.config import load_config
    from divtune.train.distributed import trainjob_manifest

    cfg = load_config(preset)
    args = dict(name="divtune-run-1-0123abcd", namespace="kubeflow-user", image="ghcr.io/divtune/divtune-trainer:0.1.0",
                data_path="/mnt/divtune/trainjobs/x/data.jsonl", base_path="/mnt/divtune/base",
                output_path="/mnt/divtune/trainjobs/x/adapter", num_nodes=2, gpus_per_node=8)
    args.update(kw)
    return trainjob_manifest(cfg, **args)


@pytest.mark.parametrize("preset", ["qwen2.5-32b-gapo", "qwen2.5-7b-gapo", "toy"])
def test_generated_trainjob_matches_the_trainjob_crd(preset):
    import re

    m = _trainjob(preset)
    assert crd_errors(m) == []
    # the CRD's CEL rule on the name (not evaluated by jsonschema), checked here
    assert re.match(RFC1035, m["metadata"]["name"]) and len(m["metadata"]["name"]) <= 63


# ---------------------------------------------------------------------------------------------------------
# the validator rejects what the API server would reject (or silently prune)
# ---------------------------------------------------------------------------------------------------------


def _shipped(kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(d.values[0] for d in _crs() if d.values[0]["kind"] == kind))


def test_misspelled_field_is_reported():
    isvc = _shipped("InferenceService")
    isvc["spec"]["predictor"]["model"]["storageURI"] = isvc["spec"]["predictor"]["model"].pop("storageUri")
    errs = crd_errors(isvc)
    assert len(errs) == 1 and errs[0].startswith("spec.predictor.model:") and "'storageURI' was unexpected" in errs[0]


def test_wrong_types_are_reported():
    isvc = _shipped("InferenceService")
    isvc["spec"]["predictor"]["minReplicas"] = "one"
    isvc["spec"]["predictor"]["tolerations"] = {"key": "nvidia.com/gpu"}
    errs = crd_errors(isvc)
    assert any(e.startswith("spec.predictor.minReplicas:") and "not of type 'integer'" in e for e in errs), errs
    assert any(e.startswith("spec.predictor.tolerations:") and "not of type 'array'" in e for e in errs), errs
    sr = _shipped("ServingRuntime")
    sr["spec"]["containers"][0]["resources"]["limits"]["memory"] = "48 gigabytes"  # not a quantity
    assert any("resources.limits.memory" in e and "does not match" in e for e in crd_errors(sr))


def test_int_or_string_and_preserved_unknown_fields_are_accepted():
    sr = _shipped("ServingRuntime")
    sr["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = 1  # integer quantity
    sr["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "500m"
    assert crd_errors(sr) == []
    isvc = _shipped("InferenceService")
    isvc["status"] = {"anything": {"the": "controller writes"}}  # status: x-kubernetes-preserve-unknown-fields
    assert crd_errors(isvc) == []


def test_old_trainjob_api_and_bad_trainjob_fields_are_rejected():
    m = _trainjob("qwen2.5-32b-gapo")
    old = copy.deepcopy(m)
    old["spec"]["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}], "spec": {}}]  # removed in Trainer v2.2
    assert any("'podTemplateOverrides' was unexpected" in e for e in crd_errors(old))
    bad = copy.deepcopy(m)
    bad["spec"]["trainer"]["numNodes"] = "2"
    bad["spec"]["trainer"]["env"].append(dict(bad["spec"]["trainer"]["env"][0]))  # duplicate env name (list map)
    errs = crd_errors(bad)
    assert any(e.startswith("spec.trainer.numNodes:") for e in errs), errs
    assert any(e.startswith("spec.trainer.env:") and "duplicate name" in e for e in errs), errs
    del bad["spec"]["runtimeRef"]
    assert any("'runtimeRef' is a required property" in e for e in crd_errors(bad))
