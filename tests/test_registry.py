"""Registry aliases: champion lineage and rollback against a real MLflow SQLite store."""

from __future__ import annotations

import uuid

import pytest

from support import one_error_line
from divtune.errors import DivtuneError


def _register(name: str, src, prev: str, promote: bool):
    from divtune.registry import models as reg

    mv = reg.register_version(name, str(src), None, uuid.uuid4().hex,
                              {reg.PREVIOUS_CHAMPION_TAG: prev, "divtune.decision": "promote" if promote else "reject"})
    reg.set_alias(name, reg.CHALLENGER, mv.version)
    if promote:
        reg.set_alias(name, reg.CHAMPION, mv.version)
    return mv


def test_lineage_and_rollback(tmp_path, cli):
    from divtune.registry import models as reg

    name = f"rb-{uuid.uuid4().hex[:8]}"
    (tmp_path / "m").mkdir()
    _register(name, tmp_path / "m", "", True)  # v1 champion
    _register(name, tmp_path / "m", "1", False)  # v2 rejected: champion stays v1
    _register(name, tmp_path / "m", "1", True)  # v3 champion, replaced v1
    assert str(reg.get_alias(name, reg.CHAMPION).version) == "3"
    assert reg.champion_lineage(name) == ["3", "1"]

    res = cli("registry", "rollback", "--name", name)
    assert res.returncode == 0, res.stderr
    assert str(reg.get_alias(name, reg.CHAMPION).version) == "1"
    assert reg.version_tags(name, 3)[reg.ROLLED_BACK_TAG] == "1"
    assert str(reg.get_alias(name, reg.CHALLENGER).version) == "3"  # challenger is untouched

    # v1 replaced nobody: a second rollback is a one-line error and changes nothing
    res = cli("registry", "rollback", "--name", name)
    assert "has no previous champion" in one_error_line(res)
    assert str(reg.get_alias(name, reg.CHAMPION).version) == "1"
    show = cli("registry", "show", "--name", name)
    assert show.returncode == 0 and "champion lineage: v1" in show.stdout


def test_rollback_bad_names():
    from divtune.registry import models as reg

    with pytest.raises(DivtuneError, match="does not exist"):
        reg.rollback("no-such-model-xyz")
    name = f"rb-{uuid.uuid4().hex[:8]}"
    reg.ensure_registered_model(name)
    with pytest.raises(DivtuneError, match="has no champion"):
        reg.rollback(name)


def test_champion_reference_is_measured_on_this_runs_sets(tmp_path, monkeypatch):
    """Same evaluation fingerprint: the champion's recorded metrics; another one: evaluate it again."""
    import mlflow

    from divtune.config import load_config
    from divtune.evaluate import suites
    from divtune.promotion import promote as promotion
    from divtune.registry import models as reg

    cfg = load_config("toy")
    name = f"ref-{uuid.uuid4().hex[:8]}"
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    fp = suites.eval_fingerprint(cfg)
    mv = reg.register_version(name, str(model), None, uuid.uuid4().hex,
                              {promotion.EVAL_FP_TAG: fp, f"{promotion.METRIC_TAG}jsd_mean": "0.2",
                               f"{promotion.METRIC_TAG}invalid_rate": "0.01"})
    calls = []
    monkeypatch.setattr(suites, "evaluate_model", lambda c, d: calls.append(d) or ({"jsd_mean": 0.3, "invalid_rate": 0.0}, {}))
    with mlflow.start_run():
        ref, label = promotion.champion_reference(cfg, name, reg.lookup(f"models:/{name}/{mv.version}"))
        assert ref == {"jsd_mean": 0.2, "invalid_rate": 0.01} and calls == [] and label == f"champion v{mv.version}"

        other = load_config("toy", overrides=["evaluate.seed=99"])
        assert suites.eval_fingerprint(other) != fp
        ref, label = promotion.champion_reference(other, name, reg.lookup(f"models:/{name}/{mv.version}"))
    assert ref == {"jsd_mean": 0.3, "invalid_rate": 0.0} and len(calls) == 1 and "re-evaluated" in label
