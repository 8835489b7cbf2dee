"""Imports only run downhill: a static import graph of the library and the KFP side, function-local imports
included, against the layers below.  And the packaging: every package folder is installed, under its name."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Bottom to top.  A module may import its own group and any group of a lower layer, nothing else.
LAYERS: list[list[str]] = [
    ["divtune.errors"],
    ["divtune.paths", "divtune.digests", "divtune.outputs", "divtune.files"],
    ["divtune.config", "divtune.cron", "divtune.storage", "divtune.results"],
    ["divtune.registry"],
    ["divtune.data", "divtune.answers"],
    ["divtune.models"],
    ["divtune.rewards"],
    ["divtune.train", "divtune.evaluate"],
    ["divtune.promotion", "divtune.serve"],
    ["divtune.stages", "divtune.repro", "divtune.preflight"],
    ["divtune.flags"],
    ["divtune.cli"],
    ["divtune_kfp.components"],
    ["divtune_kfp.pipelines"],
]
KFP_SIDE = ("kfp", "kfp_kubernetes", "kfp.kubernetes", "divtune_kfp", "components", "pipelines")


def _group(module: str) -> tuple[int, str] | None:
    if module == "divtune":  # the package itself: its __init__ imports nothing
        return (0, "divtune")
    best = None
    for i, groups in enumerate(LAYERS):
        for g in groups:
            if (module == g or module.startswith(g + ".")) and (best is None or len(g) > len(best[1])):
                best = (i, g)
    return best


def _modules() -> dict[str, Path]:
    out = {}
    for root, prefix in ((REPO / "divtune", "divtune"), (REPO / "components", "divtune_kfp.components"),
                         (REPO / "pipelines", "divtune_kfp.pipelines")):
        for p in root.rglob("*.py"):
            parts = list(p.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = p
    return out


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            found += [(f"{target}.{a.name}", node.lineno) for a in node.names]  # `from divtune import stages`
    return found


def test_every_module_has_a_layer():
    assert [m for m in _modules() if _group(m) is None] == []


def test_imports_only_run_downhill():
    upward = []
    for module, path in _modules().items():
        layer, group = _group(module)
        for target, line in _imports(module, path):
            tg = _group(target)
            if tg is None or tg[1] == group:
                continue
            if tg[0] >= layer:
                upward.append(f"{path.relative_to(REPO)}:{line} {module} -> {target}")
    assert upward == []


def test_the_library_imports_no_kfp():
    bad = [f"{p.relative_to(REPO)}:{line} {t}" for m, p in _modules().items() if m.startswith("divtune.")
           for t, line in _imports(m, p) if t.split(".")[0] in KFP_SIDE]
    assert bad == []


def test_the_layering_check_catches_an_upward_import(tmp_path):
    """The check itself can fail: a rewards module importing the evaluate layer is reported."""
    p = tmp_path / "bad.py"
    p.write_text("def f():\n    from divtune.evaluate.suites import METRICS\n")
    layer, group = _group("divtune.rewards.bad")
    targets = [_group(t) for t, _ in _imports("divtune.rewards.bad", p)]
    assert any(tg is not None and tg[1] != group and tg[0] >= layer for tg in targets)


def test_every_package_folder_is_installed_and_nothing_generic_at_top_level():
    tool = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    mapping = tool["package-dir"]
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "divtune").rglob("__init__.py")}
    assert on_disk <= listed, sorted(on_disk - listed)
    assert mapping == {"divtune_kfp.components": "components", "divtune_kfp.pipelines": "pipelines"}
    assert all(re.match(r"divtune(_kfp)?(\.|$)", name) for name in listed)
