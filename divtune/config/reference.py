"""The config reference, generated from the schema: ``python -m divtune.config.reference > docs/config.md``.

One Markdown table per section (key, type, default, bounds, help), then the cross-field rules of
:mod:`divtune.config.validate`.  A test keeps ``docs/config.md`` equal to :func:`render_reference`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import types
import typing
from typing import Any, Literal

from divtune.config.schema import ImagesConfig, PipelineConfig
from divtune.config.validate import RULES, _scalar_type, bounds_text

__all__ = ["render_reference"]

_SCALARS = {int: "int", float: "float", bool: "bool", str: "str", type(None): "null"}


def _type_text(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_text(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is list:
        inner = args[0]
        return "list of entries (below)" if dataclasses.is_dataclass(inner) else f"list of {_type_text(inner)}"
    if origin is dict:
        return f"map of {_type_text(args[0])} to {_type_text(args[1])}"
    return _SCALARS.get(tp, getattr(tp, "__name__", str(tp)))


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _bounds(meta: typing.Mapping[str, Any], tp: Any) -> str:
    scalar = _scalar_type(tp)
    is_list = list in {typing.get_origin(tp), *map(typing.get_origin, typing.get_args(tp))}
    parts = []
    text = bounds_text(meta, integer=scalar is int)
    if text:
        parts.append(f"each {text}" if is_list else text)
    if scalar is float:
        parts.append("finite")
    if meta.get("nonempty"):
        parts.append("non-empty")
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _sections(cls: type, prefix: str) -> list[tuple[str, type]]:
    """(prefix, dataclass) for ``cls`` and every section inside it, depth first."""
    out = [(prefix, cls)]
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        key = f"{prefix}.{f.name}" if prefix else f.name
        if dataclasses.is_dataclass(tp):
            out += _sections(tp, key)
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            out += _sections(typing.get_args(tp)[0], f"{key}[]")
    return out


def _table(prefix: str, cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    title = prefix or "top level"
    lines = [f"## `{title}`" if prefix else f"## {title}", "", _cell(inspect.getdoc(cls) or ""), "",
             "| key | type | default | bounds | help |", "|---|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            continue  # its own section
        key = f"{prefix}.{f.name}" if prefix else f.name
        default = json.dumps(_default(f), ensure_ascii=False)
        lines.append(f"| `{key}` | {_cell(_type_text(tp))} | `{_cell(default)}` | {_cell(_bounds(f.metadata, tp))} "
                     f"| {_cell(f.metadata.get('help', ''))} |")
    return lines + [""]


def render_reference() -> str:
    """``docs/config.md``: every config key with its type, default, bounds and help, then the cross-field rules."""
    lines = [
        "# Config reference",
        "",
        "<!-- Generated from divtune/config/schema.py by `python -m divtune.config.reference > docs/config.md`;",
        "     do not edit by hand (tests/test_config_schema.py fails when this file and the schema differ). -->",
        "",
        "A run is one config: a preset from `configs/` (`--preset NAME`), a YAML file (`--config FILE`, which may",
        "start with `preset: NAME`) and `--set key.sub=value` overrides, merged in that order. Unknown keys, wrong",
        "types and values outside the bounds below are one-line errors naming the key. Every float must be finite",
        "(no NaN or infinity); bounds on a list apply to each element; an optional key (`... or null`) may be null",
        "even when it must otherwise be non-empty.",
        "",
    ]
    for prefix, cls in _sections(PipelineConfig, ""):
        lines += _table(prefix, cls)
    lines += ["Images are read from `configs/images.yaml` (not part of a run's config).", ""]
    lines += _table("images", ImagesConfig)
    lines += ["## Rules across fields", "", "Checked after the bounds above, in this order:", ""]
    lines += [f"- {_cell(inspect.getdoc(rule) or '')}" for rule in RULES]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_reference())
