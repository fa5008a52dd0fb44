"""Tools the model can call: a registry of Python callables with derived JSON schemas."""

from .registry import ToolRegistry, default_registry, function_tool
from .schema import function_schema, parse_docstring, type_schema

__all__ = [
    "ToolRegistry",
    "default_registry",
    "function_schema",
    "function_tool",
    "parse_docstring",
    "type_schema",
]
