"""Start-up mistakes as one line that says what to fix.

The entry points (``hpo-services``, ``hpo-edge``) catch a :class:`StartupError` or the
settings' ``ValidationError`` and print :func:`describe` of it instead of a traceback:
the reader is an operator who mistyped a variable, not a developer.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class StartupError(RuntimeError):
    """The process cannot start as configured; the message says what to change."""


_PLAIN = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
}
_SHOW_INPUT = {*_PLAIN, "greater_than", "greater_than_equal", "less_than", "less_than_equal"}
"""Error types whose input is a number or a word, safe to repeat (never a URL or a
secret, which may hold a password)."""


def describe(exc: BaseException, *, env_prefix: str | None = "HPO_") -> str:
    """One line for ``exc``; a settings error names the environment variable
    (``env_prefix`` + field), or the dotted key (``env_prefix=None``, for config files)."""
    if isinstance(exc, ValidationError):
        return "; ".join(_one(error, env_prefix) for error in exc.errors())
    return str(exc)


def _one(error: Any, env_prefix: str | None) -> str:
    kind = str(error.get("type", ""))
    message = _PLAIN.get(kind) or str(error.get("msg", "")).removeprefix("Value error, ")
    loc = [str(part) for part in error.get("loc", ())]
    if not loc:
        return message
    if env_prefix is not None and len(loc) == 1:
        name = env_prefix + loc[0].upper()
    else:
        name = ".".join(loc)
    if kind in _SHOW_INPUT:
        message = f"{message[:1].lower()}{message[1:]} (got {error.get('input')!r})"
    return f"{name}: {message}"
