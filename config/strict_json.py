"""Strict JSON: what PostgreSQL can store and Python can walk, or a clear refusal.

`loads_strict` parses a JSON document and refuses, with `HostileJSON` (a ValueError):
  - a document nested deeper than MAX_DEPTH (json's recursion would end in a RecursionError);
  - a NUL character (``\\u0000``) in any string or key (PostgreSQL's jsonb and text can't hold it);
  - a lone UTF-16 surrogate (``\\ud800``: not encodable as UTF-8, so neither stored nor hashed).

Used by the API's parser (`config.api.parsers`), the Stripe webhook and the web forms' JSON
inputs: whatever JSON the project accepts from outside goes through it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64

_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")


class HostileJSON(ValueError):
    """A JSON document the project refuses (not JSON, too deep, NUL, lone surrogate)."""


def _check_text(text: str, where: str) -> None:
    match = _FORBIDDEN.search(text)
    if match is None:
        return
    if match.group() == "\x00":
        raise HostileJSON(f"NUL characters (\\u0000) are not allowed ({where}).")
    raise HostileJSON(f"Unpaired UTF-16 surrogates (e.g. \\ud800) are not allowed ({where}).")


def check_value(value: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Walk a parsed JSON value without recursion; raise HostileJSON on the first problem."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_text(item, "in a string")
        elif isinstance(item, dict | list):
            if depth > max_depth:
                raise HostileJSON(f"Nested deeper than {max_depth} levels.")
            if isinstance(item, dict):
                for key, sub in item.items():
                    _check_text(key, "in a key")
                    stack.append((sub, depth + 1))
            else:
                stack.extend((sub, depth + 1) for sub in item)


def loads_strict(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` that refuses what can't be stored (see the module docstring)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise HostileJSON("Not UTF-8.") from None
    try:
        value = json.loads(data)
    except RecursionError:
        raise HostileJSON(f"Nested deeper than {max_depth} levels.") from None
    except ValueError as exc:
        raise HostileJSON(f"Not valid JSON ({exc}).") from None
    check_value(value, max_depth=max_depth)
    return value
