"""Manual approval against a real SQLite registry: a passing candidate stays challenger; `registry approve` moves
champion, records who and when, and refuses a version that is no longer the challenger."""

from __future__ import annotations

import uuid

import pytest

from divtune.cli import main
from divtune.config import load_config
from divtune.errors import ConfigError, DivtuneError
from divtune.promotion import gate
from divtune.promotion import promote as promotion
from divtune.registry import models as reg

GOOD = {"jsd_mean": 0.1, "invalid_rate": 0.0}
BASE = {"jsd_mean": 0.4, "invalid_rate": 0.0}


def _promote(cfg, name, metrics=GOOD):
    key = uuid.uuid4().hex
    mv, decision, _ = promotion.promote(cfg, key, f"/models/{key}", None, metrics, BASE, promotion.policy_for(cfg))
    return mv, decision


def test_manual_approval_moves_champion_only_on_approve(capsys):
    name = f"appr-{uuid.uuid4().hex[:8]}"
    cfg = load_config("toy", overrides=[f"registry.model_name={name}", "gate.approval=manual"])
    v1, d1 = _promote(cfg, name)
    assert d1.promote and reg.get_alias(name, reg.CHAMPION) is None
    assert reg.get_alias(name, reg.CHALLENGER).version == v1.version
    assert reg.version_tags(name, v1.version)[promotion.APPROVAL_TAG] == "pending"
    s = promotion.summary("k", name, v1, d1, GOOD, BASE)
    assert "awaiting approval: divtune registry approve" in promotion.format_summary(s)

    assert main(["registry", "approve", name, str(v1.version), "--by", "alice"]) == 0
    assert reg.get_alias(name, reg.CHAMPION).version == v1.version
    tags = reg.version_tags(name, v1.version)
    assert tags[promotion.APPROVED_BY_TAG] == "alice" and tags[promotion.APPROVAL_TAG] == "approved"
    assert tags[promotion.APPROVED_AT_TAG].endswith("+00:00")
    assert "champion -> v" in capsys.readouterr().out

    v2, _ = _promote(cfg, name, {"jsd_mean": 0.05, "invalid_rate": 0.0})  # newer and better: v1 is no longer challenger
    before = (reg.get_alias(name, reg.CHAMPION).version, reg.get_alias(name, reg.CHALLENGER).version)
    with pytest.raises(DivtuneError, match=f"v{v1.version} is not the challenger"):
        promotion.approve(name, str(v1.version), by="bob")
    assert (reg.get_alias(name, reg.CHAMPION).version, reg.get_alias(name, reg.CHALLENGER).version) == before
    assert main(["registry", "approve", name, str(v2.version), "--by", "bob"]) == 0
    assert reg.version_tags(name, v2.version)[reg.PREVIOUS_CHAMPION_TAG] == str(v1.version)  # rollback lineage


def test_a_rejected_or_auto_promoted_version_cannot_be_approved():
    name = f"appr-{uuid.uuid4().hex[:8]}"
    cfg = load_config("toy", overrides=[f"registry.model_name={name}", "gate.approval=manual"])
    bad, d = _promote(cfg, name, {"jsd_mean": 0.9, "invalid_rate": 0.5})
    assert not d.promote
    with pytest.raises(DivtuneError, match="did not pass the gate"):
        promotion.approve(name, str(bad.version), by="x")
    auto = load_config("toy", overrides=[f"registry.model_name={name}"])
    v, _ = _promote(auto, name)
    assert reg.get_alias(name, reg.CHAMPION).version == v.version
    with pytest.raises(DivtuneError, match="not awaiting approval"):
        promotion.approve(name, str(v.version), by="x")


def test_policy_files_say_approval_and_nothing_else_new():
    p = gate.policy_from_dict({"approval": "manual", "checks": [{"metric": "jsd_mean", "rule": "decrease"}]})
    assert p.approval == "manual" and p.to_dict()["approval"] == "manual"
    with pytest.raises(ConfigError, match="approval must be one of auto, manual"):
        gate.policy_from_dict({"approval": "sometimes", "checks": [{"metric": "jsd_mean", "rule": "decrease"}]})
