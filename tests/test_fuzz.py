"""Property-based bad input through the CLI, in-process (``divtune.cli.main``): malformed configs, flags and
input files (lists, prompts, datasets, policies, cron strings).

For every generated case: exit 2, exactly one ``divtune: error:`` line, no traceback, no output written, the
registry unchanged, a bounded run time.  ``DIVTUNE_FUZZ_EXAMPLES`` (default 25 per property) runs longer.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import time
import uuid
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from divtune.cli import main

EXAMPLES = int(os.environ.get("DIVTUNE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("DIVTUNE_FUZZ_EXAMPLES"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
NOWHERE = "http://127.0.0.1:9"  # a closed port on loopback: a KFP host that refuses at once
PER_CASE_S = 60


def _registered() -> int:
    from divtune.registry import tracking

    tracking.setup()
    return len(tracking.client().search_registered_models())


def _run(argv: list[str], out: Path | None = None) -> str:
    """Run the CLI in-process; assert the bad-input contract; return the error line."""
    before = _registered()
    err = io.StringIO()
    t0 = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    took = time.monotonic() - t0
    text = err.getvalue()
    lines = [ln for ln in text.splitlines() if ln.startswith("divtune: error:")]
    assert code == 2, (argv, code, text[-2000:])
    assert len(lines) == 1, (argv, text[-2000:])
    assert "Traceback" not in text, (argv, text[-2000:])
    assert len(lines[0]) < 600, lines[0]
    assert took < PER_CASE_S, (argv, took)
    assert _registered() == before, argv
    if out is not None:
        assert not out.exists(), (argv, "output written")
    return lines[0]


# --------------------------------------------------------------------------------------
# values
# --------------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=30))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=5),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=5)),
                           max_leaves=25)


def _toy_config() -> dict:
    from divtune.config import load_config

    return load_config("toy").to_dict()


def _fields(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and all(isinstance(x, str) for x in v):
            if key in ("cluster.env", "cluster.node_selector"):
                out.append((key, v))
            else:
                out += _fields(v, key + ".")
        else:
            out.append((key, v))
    return out


FIELDS = _fields(_toy_config())


def _bad_for(value: object) -> st.SearchStrategy:
    """Values of the wrong type for a field holding ``value`` (never silently valid)."""
    if isinstance(value, bool):
        return st.one_of(st.integers(2, 9), st.sampled_from(["maybe", "2", ""]), st.lists(st.booleans(), min_size=1))
    if isinstance(value, int):
        return st.one_of(st.sampled_from(["x", "", "1e3x"]), st.floats(0.5, 9.5).filter(lambda f: f != int(f)),
                         st.lists(st.integers(), min_size=1), st.dictionaries(st.text(min_size=1, max_size=3),
                                                                               st.integers(), min_size=1))
    if isinstance(value, float):
        return st.one_of(st.sampled_from([math.nan, math.inf, -math.inf, "nan", "inf", "abc", ""]),
                         st.lists(st.floats(), min_size=1))
    if isinstance(value, str):
        return st.one_of(st.integers(), st.lists(st.text(), min_size=1), st.dictionaries(st.text(min_size=1), st.text(),
                                                                                          min_size=1))
    if isinstance(value, dict):
        return st.one_of(st.lists(st.text(), min_size=1), st.integers(), st.text(min_size=1))
    if isinstance(value, list):
        return st.one_of(st.integers(), st.dictionaries(st.text(min_size=1, max_size=4), st.integers(), min_size=1))
    return st.one_of(st.lists(st.integers(), min_size=1), st.dictionaries(st.text(min_size=1), st.integers(), min_size=1))


@st.composite
def bad_configs(draw) -> dict:
    """The toy config with one field set to a value of the wrong kind, or an unknown key, or a bad section."""
    cfg = copy.deepcopy(_toy_config())
    kind = draw(st.sampled_from(["field", "unknown", "section"]))
    if kind == "unknown":
        section = draw(st.sampled_from([None, *[k for k, v in cfg.items() if isinstance(v, dict)]]))
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in cfg and k != "preset"))
        (cfg if section is None else cfg[section])[key] = draw(json_values)
        return cfg
    if kind == "section":
        section = draw(st.sampled_from([k for k, v in cfg.items() if isinstance(v, dict)]))
        cfg[section] = draw(st.one_of(st.lists(scalars, min_size=1), st.integers(), st.text(min_size=1)))
        return cfg
    key, value = draw(st.sampled_from(FIELDS))
    node = cfg
    *path, last = key.split(".")
    for p in path:
        node = node[p]
    if value is None:
        node[last] = draw(st.one_of(st.lists(st.integers(), min_size=1), st.dictionaries(st.text(min_size=1),
                                                                                          st.integers(), min_size=1)))
    else:
        node[last] = draw(_bad_for(value))
    return cfg


# --------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------


@FUZZ
@given(cfg=bad_configs())
def test_malformed_config_files(tmp_path_factory, cfg):
    d = tmp_path_factory.mktemp("cfg")
    path = d / "c.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True) if cfg is not None else "")
    _run(["compile", "--config", str(path), "-o", str(d / "out.yaml")], out=d / "out.yaml")


@FUZZ
@given(text=st.text(max_size=300))
def test_arbitrary_config_text(tmp_path_factory, text):
    """Any text as a config file: either a mapping the schema then refuses, or one line about the YAML."""
    d = tmp_path_factory.mktemp("cfgtext")
    path = d / "c.yaml"
    path.write_text(text + "\nnot_a_config_key: 1\n" if not text.strip() else text + "\n\nzz_unknown: [1]\n")
    _run(["compile", "--config", str(path), "-o", str(d / "out.yaml")], out=d / "out.yaml")


@FUZZ
@given(flag=st.sampled_from(["--samples", "--max-new-tokens", "--temperature", "--batch-size", "--seed",
                             "--template-id", "--few-shot", "--timeout"]),
       value=st.one_of(st.text(max_size=12), st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e99", "10**9",
                                                              "١٢", "５", "", " ", "1.5", "99999999999"])))
def test_malformed_numeric_flags(flag, value):
    argv = ["evaluate", "lists", "--model", "/nonexistent/model", flag, value]
    _run(argv)  # a valid value reaches the model check: exit 2 either way, never a traceback


@FUZZ
@given(data=json_values, raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_malformed_lists_files(tmp_path_factory, data, raw):
    d = tmp_path_factory.mktemp("lists")
    path = d / "lists.json"
    path.write_bytes(raw if raw is not None else json.dumps(data).encode())
    out = d / "result.json"
    _run(["evaluate", "lists", "--model", "/nonexistent/model", "--lists", str(path), "-o", str(out)], out=out)


@FUZZ
@given(data=json_values, raw=st.one_of(st.none(), st.binary(max_size=200)))
def test_malformed_prompts_files(tmp_path_factory, data, raw):
    d = tmp_path_factory.mktemp("prompts")
    path = d / "prompts.json"
    path.write_bytes(raw if raw is not None else json.dumps(data).encode())
    _run(["evaluate", "open-set", "--model", "/nonexistent/model", "--prompts", str(path), "--no-mlflow"])


@FUZZ
@given(rows=st.lists(json_values, min_size=0, max_size=6), raw=st.one_of(st.none(), st.binary(max_size=200)),
       task=st.sampled_from(["lists", "math", "prompts"]))
def test_malformed_datasets(tmp_path_factory, rows, raw, task):
    d = tmp_path_factory.mktemp("data")
    path = d / "data.jsonl"
    path.write_bytes(raw if raw is not None else "\n".join(json.dumps(r) for r in rows).encode())
    out = d / "adapter"
    _run(["train", "--data", str(path), "--base", "/nonexistent/model", "-o", str(out), "--set", f"data.task={task}"],
         out=out)


@FUZZ
@given(policy=json_values)
def test_malformed_policies(tmp_path_factory, policy):
    d = tmp_path_factory.mktemp("policy")
    path = d / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    _run(["run", "--set", f"gate.policy={path}", "--kfp-host", NOWHERE])


@FUZZ
@given(cron=st.one_of(st.text(max_size=40),
                      st.lists(st.sampled_from(["*", "0", "5", "*/5", "1-3", "a", "60", "-1", "?", "L", "５", ""]),
                               min_size=1, max_size=8).map(" ".join),
                      st.sampled_from(["@every 1s", "@every 0", "@every", "@hourly x", "* * * * * *"])))
def test_malformed_cron_strings(cron):
    _run(["schedule", "--cron", cron, "--kfp-host", NOWHERE, "--name", f"fuzz-{uuid.uuid4().hex[:6]}"])


def test_the_harness_rejects_a_case_that_breaks_the_contract():
    """The contract check can fail: a command that succeeds is not a bad-input case."""
    with pytest.raises(AssertionError):
        _run(["registry", "--help"])
