"""Reading a JSON document a user wrote (a ``--loadJson`` config, a submitted search
space or segment file, a request body) with errors that say what is most likely wrong.

Strict JSON, as phpo's own ``json.load`` reads it, so that a file accepted here is
accepted by phpo too: no trailing commas, no comments, no ``NaN`` or ``Infinity``.
What differs is the message. Python's ``json`` reports a trailing comma as "Expecting
property name" at the closing brace; :func:`parse_json` says "a trailing comma after
the last entry on line 8?". A document nested deeper than :data:`MAX_DEPTH` is refused
before the recursive decoder sees it, and the whole read is linear in its size.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64
"""Configs and search spaces nest a few levels; this bounds the decoder's recursion."""


class JsonFileError(ValueError):
    """Why a text is not the JSON document it should be; ``line`` and ``column`` are
    1-based (0 when the problem has no place)."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def parse_json(text: str | bytes, *, allow_nan: bool = False) -> Any:
    """The decoded document; :class:`JsonFileError` explaining what is wrong.

    ``allow_nan`` reads ``NaN`` and ``Infinity`` as Python's ``json`` does, for bodies
    whose fields are checked afterwards (so the error can name the field)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise JsonFileError(f"not UTF-8 text (byte {exc.start})") from None
    _check_depth(text)
    try:
        if allow_nan:
            return json.loads(text)
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise JsonFileError(_explain(exc), exc.lineno, exc.colno) from None
    except ValueError as exc:  # NaN/Infinity, or an integer of thousands of digits
        raise JsonFileError(str(exc)) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (JSON numbers are finite)")


def _check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH, counting brackets outside strings."""
    depth = 0
    in_string = escaped = False
    line = 1
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
            if depth > MAX_DEPTH:
                raise JsonFileError(f"nested deeper than {MAX_DEPTH} levels", line)
        elif char in "]}":
            depth -= 1
        if char == "\n":
            line += 1


def _explain(exc: json.JSONDecodeError) -> str:
    where = f"line {exc.lineno}, column {exc.colno}"
    comma = _trailing_comma(exc.doc, exc.pos)
    if comma is not None:
        return f"a trailing comma after the last entry on line {comma}? ({where}: {exc.msg})"
    return f"{exc.msg} ({where})"


def _trailing_comma(doc: str, pos: int) -> int | None:
    """The line of a comma that directly precedes the closing bracket at ``pos``."""
    if pos >= len(doc) or doc[pos] not in "]}":
        return None
    before = pos - 1
    while before >= 0 and doc[before] in " \t\r\n":
        before -= 1
    if before < 0 or doc[before] != ",":
        return None
    return doc.count("\n", 0, before) + 1
