"""The README's table of stack config keys, generated from the settings model so it cannot drift.

python -m tools.config_reference      # prints the Markdown table
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from model.settings import Settings

BEGIN = "<!-- config-reference:begin -->"
END = "<!-- config-reference:end -->"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *typing.get_args(annotation)]
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(arg) for arg in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (types.UnionType, typing.Union):
        return " \\| ".join(_type_name(arg) for arg in typing.get_args(annotation))
    if origin in (list, tuple):
        inner = [arg for arg in typing.get_args(annotation) if arg is not Ellipsis]
        return f"list of {_type_name(inner[0])}" if inner else "list"
    if origin is dict:
        key, value = typing.get_args(annotation)
        return f"map {_type_name(key)} → {_type_name(value)}"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(object)"
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, list) and value and all(isinstance(item, BaseModel) for item in value):
        names = [getattr(item, "name", "?") for item in value]
        return f"`{json.dumps(names)}` (by name; README)"
    return f"`{json.dumps(value, default=str)}`"


def _words(model: type[BaseModel]) -> str:
    """DataDir -> "data dir"."""
    return re.sub(r"(?<!^)(?=[A-Z])", " ", model.__name__).lower()


def rows(model: type[BaseModel], prefix: str = "settings") -> list[tuple[str, str, str]]:
    result = []
    for name, info in model.model_fields.items():
        key = f"{prefix}.{info.alias or name}"
        nested = _model_of(info.annotation)
        if nested is not None and nested.__name__ != "Resources":
            if typing.get_origin(info.annotation) in (list, tuple):
                result.append((key, f"list of {_words(nested)} objects", _default(info)))
                result += rows(nested, f"{key}[]")
            else:
                result += rows(nested, key)
        elif nested is not None:  # Resources: three keys with units in their names
            default = info.get_default(call_default_factory=True)
            for field_name, field in nested.model_fields.items():
                value = getattr(default, field_name) if default is not None else None
                result.append((f"{key}.{field.alias}", _type_name(field.annotation), f"`{value}`"))
        else:
            result.append((key, _type_name(info.annotation), _default(info)))
    return result


def table() -> str:
    lines = ["| key | type | default |", "|---|---|---|"]
    lines += [f"| `{key}` | {type_} | {default} |" for key, type_, default in rows(Settings)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
