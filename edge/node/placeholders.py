"""Placeholders of ``evaluationExec``: phpo's ``%SEGMENT_NAME`` and ``%IN_DATA``, and
``%FLAGS``, the point as command-line flags.

Values come from users, so each is shell-quoted before it lands in the command line,
and the substitution is a single pass: a value that itself contains ``%IN_DATA`` is
not expanded again.

``%FLAGS`` becomes ``--name value`` for every parameter of the point, in the order of
``input.json`` (a conditional space's point holds only its active parameters, so only
those become flags). Each name and each value is one shell word whatever it holds
(quotes, ``;``, ``$()``, newlines). Values are written as in JSON: numbers as JSON
writes them (``0.001``, ``3``), strings as they are, booleans ``true``/``false`` and
null ``null``, so that every flag takes exactly one value; a list or object (no space
form yields one today) is its compact JSON text.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence

_PLACEHOLDER = re.compile(r"%(SEGMENT_NAME|IN_DATA|FLAGS)")


def flag_value(value: object) -> str:
    """One parameter's value as its flag's argument (before quoting)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def flag_words(params: Mapping[str, object]) -> list[str]:
    """The point as argv words: ``["--lr", "0.001", "--optimizer", "adam"]``."""
    words: list[str] = []
    for name, value in params.items():
        words += [f"--{name}", flag_value(value)]
    return words


def substitute_exec(
    exec_: str,
    *,
    segment: str,
    training_files: Sequence[str],
    params: Mapping[str, object] | None = None,
) -> str:
    values = {
        "SEGMENT_NAME": shlex.quote(segment),
        "IN_DATA": shlex.quote(",".join(training_files)),
        "FLAGS": " ".join(shlex.quote(word) for word in flag_words(params or {})),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], exec_)
