"""JSON from outside (HTTP bodies, command-line arguments, files): exact numbers, bounded nesting.

Python's ``json`` module recurses once per level, so a document of 100,000 ``[`` raises
RecursionError (a traceback in a CLI, a 500 in an API). ``loads`` measures the nesting first, in
one pass that stops at the limit, and refuses deeper documents with a message like any other
invalid input. Numbers with a fraction become ``Decimal`` (``19.99`` stays 19.99).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Final

MAX_DEPTH: Final = 32  # settings are two or three levels deep


class JsonInputError(ValueError):
    """Input that is not JSON, or nested too deeply; the message says which."""


def exceeds_depth(text: str, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than ``max_depth`` (brackets in strings ignored)."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "]}":
            depth -= 1
    return False


def loads(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of ``text``; JsonInputError when it is not JSON or nests too deeply."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        if exceeds_depth(text, max_depth):
            raise JsonInputError(f"nested deeper than {max_depth} levels")
        return json.loads(text, parse_float=Decimal)
    except JsonInputError:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits
        raise JsonInputError(f"not valid JSON: {exc}") from None
