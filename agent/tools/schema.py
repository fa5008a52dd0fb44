"""Derive a tool's JSON schema from a Python function's signature and docstring.

Supported parameter types: str, int, float, bool, list[T], dict[str, T], Literal[...],
Enum subclasses, T | None / Optional[T], Any. Parameters with a default, and Optional ones,
are not required. Descriptions come from a Google-style docstring: the text before the
first section is the tool description, the `Args:` section describes parameters.
"""

from __future__ import annotations

import enum
import inspect
import re
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Returns?|Yields?|Raises|Examples?|Notes?):\s*$"
)
_ARG = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_ARG_SECTIONS = ("Args", "Arguments", "Parameters", "Params")
_NULL = {"type": "null"}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    annotation: Any
    required: bool
    none_if_missing: bool  # Optional without a default: the model may leave it out


@dataclass(frozen=True, slots=True)
class FunctionSchema:
    description: str
    input_schema: dict[str, Any]
    params: tuple[Param, ...]


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) from a Google-style docstring."""
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    entry_indent: int | None = None  # indent of the entries of the current section
    current: str | None = None
    for line in inspect.cleandoc(doc or "").splitlines():
        text = line.strip()
        indent = len(line) - len(line.lstrip())
        header = _SECTION.match(text) if indent == 0 else None
        if header:
            section, entry_indent, current = header.group(1), None, None
            continue
        if section is None:
            summary.append(text)
            continue
        if section not in _ARG_SECTIONS or not text:
            continue
        if entry_indent is None:
            entry_indent = indent
        match = _ARG.match(text)
        if match and indent <= entry_indent:
            current = match.group(1).lstrip("*")
            args[current] = match.group(2).strip()
        elif current is not None:  # a continuation line
            args[current] = f"{args[current]} {text}".strip()
    return " ".join(" ".join(summary).split()), args


def function_schema(fn: Callable[..., Any], description: str | None = None) -> FunctionSchema:
    """Schema for calling `fn` with keyword arguments. Raises TypeError for a signature that
    cannot be described (missing annotation, *args/**kwargs, unsupported type)."""
    name = getattr(fn, "__name__", repr(fn))
    doc_description, arg_docs = parse_docstring(inspect.getdoc(fn))
    try:
        hints = get_type_hints(fn)
    except Exception as exc:
        raise TypeError(f"tool {name}: cannot resolve type hints: {exc}") from exc
    properties: dict[str, Any] = {}
    required: list[str] = []
    params: list[Param] = []
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"tool {name}: *args/**kwargs parameters are not supported")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(f"tool {name}: positional-only parameter {param.name!r}")
        if param.name not in hints:
            raise TypeError(f"tool {name}: parameter {param.name!r} needs a type annotation")
        annotation = hints[param.name]
        try:
            prop = type_schema(annotation)
        except TypeError as exc:
            raise TypeError(f"tool {name}: parameter {param.name!r}: {exc}") from None
        if arg_docs.get(param.name):
            prop["description"] = arg_docs[param.name]
        has_default = param.default is not param.empty
        if has_default and _is_json_value(param.default):
            prop["default"] = _json_value(param.default)
        optional = _is_optional(annotation)
        if not has_default and not optional:
            required.append(param.name)
        properties[param.name] = prop
        params.append(
            Param(param.name, annotation, param.name in required, optional and not has_default)
        )
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    text = description if description is not None else doc_description
    return FunctionSchema(text or name, schema, tuple(params))


def type_schema(tp: Any) -> dict[str, Any]:
    """The JSON schema of one annotation."""
    if tp is Any:
        return {}
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is list:
        return {"type": "array"}
    if tp is dict:
        return {"type": "object"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _enum_schema([m.value for m in tp])
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return _enum_schema(list(args))
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            inner = type_schema(options[0])
        else:
            inner = {"anyOf": [type_schema(a) for a in options]}
        if len(options) == len(args):
            return inner
        return _nullable(inner)
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        raise TypeError("only tuple[T, ...] is supported")
    if origin in (list, Sequence, tuple, set, frozenset):
        return {"type": "array", "items": type_schema(args[0])}
    if origin in (dict, Mapping):
        if args[0] is not str:
            raise TypeError("dict keys must be str")
        return {"type": "object", "additionalProperties": type_schema(args[1])}
    raise TypeError(f"unsupported type {tp!r}")


def coerce(value: Any, tp: Any) -> Any:
    """Turn a validated JSON value into what the annotation expects (Enums, whole floats
    for int parameters), recursing into lists and optionals."""
    if value is None:
        return None
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tp(value)
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return coerce(value, options[0]) if len(options) == 1 else value
    if origin in (list, Sequence, set, frozenset, tuple) and args and isinstance(value, list):
        items = [coerce(v, args[0]) for v in value]
        return origin(items) if origin in (set, frozenset, tuple) else items
    if origin in (dict, Mapping) and len(args) == 2 and isinstance(value, dict):
        return {k: coerce(v, args[1]) for k, v in value.items()}
    return value


def _enum_schema(values: list[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"enum": [_json_value(v) for v in values]}
    kinds = {_json_type(v) for v in values}
    if len(kinds) == 1 and None not in kinds:
        schema["type"] = kinds.pop()
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema.get("type"), str):
        out = {**schema, "type": [schema["type"], "null"]}
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [schema, _NULL]}


def _is_optional(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType) and type(None) in get_args(tp)


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _json_value(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def _is_json_value(value: Any) -> bool:
    value = _json_value(value)
    return value is None or isinstance(value, str | int | float | bool)
