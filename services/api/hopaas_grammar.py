"""Reading a Hopaas suggestion string, ``optuna#<kind>(<arguments>)``, as Hopaas
clients write it. Pure and linear in the length of the string (one pass, no recursion,
no ``eval``), whatever the string holds.

The public Hopaas client formats its suggestions with Python's ``str()`` and lower-case
booleans: ``optuna#int(2,20,1,false)``, ``optuna#float(-1.0,1.0,NaN,false)`` (a later
version writes ``NaN`` for "no step" and JSON values), ``optuna#categorical(successful,
unsuccessful,improvable)`` (the choices joined by commas, unquoted). Older callers and
this project's own tests write Python literals: ``optuna#float(1e-4, 1, log=True)``,
``optuna#categorical('adam', 'sgd')``. All of these read the same way:

* arguments are separated by commas, positional or ``name=value``; whitespace around
  them is ignored, and so is one trailing comma;
* a value is a number (``3``, ``-2.5``, ``1e-3``), a quoted string (``'a'`` or ``"a"``,
  backslash escapes), a list ``[a, b]`` or tuple ``(a, b)`` of such values (one level),
  or a bare word: ``true``/``false`` and ``none``/``null`` in any case are the boolean
  and None, ``nan`` in any case is :data:`NAN` (Hopaas's "no step"), anything else is
  the string as written (so ``successful`` is the string ``"successful"``).

What cannot be read this way (no ``optuna#`` prefix followed by ``kind(``, no closing
parenthesis at the end, an empty argument, an unterminated string or list, a nested
list) raises :class:`GrammarError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PREFIX = "optuna#"
MAX_LENGTH = 1_000_000
MAX_VALUES = 10_000
"""Values in one suggestion (a categorical's choices, in particular)."""

NAN = math.nan
"""Read from ``nan``: Hopaas clients write it for an absent step."""

_SEPARATORS = frozenset(",()[]='\"")
_WORDS: dict[str, Any] = {"true": True, "false": False, "none": None, "null": None}


class GrammarError(ValueError):
    """Why a suggestion string cannot be read."""


@dataclass
class Suggestion:
    kind: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


def read_suggestion(text: str) -> Suggestion:
    """The kind and arguments of ``optuna#kind(...)``; :class:`GrammarError` if it is
    malformed."""
    if len(text) > MAX_LENGTH:
        raise GrammarError(f"is longer than {MAX_LENGTH} characters")
    body = text.strip()
    if not body.startswith(PREFIX):
        raise GrammarError(f"does not start with {PREFIX}")
    open_at = body.find("(", len(PREFIX))
    kind = body[len(PREFIX) : open_at].strip() if open_at > 0 else ""
    if not kind or not (kind.replace("_", "a").isascii() and kind.replace("_", "a").isalpha()):
        raise GrammarError(f"expected {PREFIX}<kind>(<arguments>), e.g. {PREFIX}int(1, 10)")
    if not body.endswith(")"):
        raise GrammarError("does not end with ')'")
    suggestion = Suggestion(kind)
    _Reader(body, open_at + 1, len(body) - 1).arguments(suggestion)
    return suggestion


class _Reader:
    """A cursor over ``text[start:end]`` (the inside of the parentheses)."""

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text, self.pos, self.end = text, start, end
        self.values = 0

    def arguments(self, into: Suggestion) -> None:
        self._skip()
        if self.pos == self.end:
            return
        while True:
            name, value = self._argument()
            if name is None:
                if into.kwargs:
                    raise GrammarError("a positional argument follows a keyword argument")
                into.args.append(value)
            elif name in into.kwargs:
                raise GrammarError(f"argument {name!r} is given twice")
            else:
                into.kwargs[name] = value
            self._skip()
            if self.pos == self.end:
                return
            self._expect(",")
            self._skip()
            if self.pos == self.end:  # one trailing comma, as Python allows
                return

    def _argument(self) -> tuple[str | None, Any]:
        start = self.pos
        word = self._word()
        self._skip()
        if word and self._peek() == "=" and word.isidentifier():
            self.pos += 1
            self._skip()
            return word, self._value(nested=False)
        self.pos = start
        return None, self._value(nested=False)

    def _value(self, *, nested: bool) -> Any:
        self.values += 1
        if self.values > MAX_VALUES:
            raise GrammarError(f"has more than {MAX_VALUES} values")
        char = self._peek()
        if char in ("'", '"'):
            return self._string(char)
        if char in ("[", "("):
            if nested:
                raise GrammarError("lists cannot be nested")
            return self._list("]" if char == "[" else ")")
        word = self._word()
        if not word:
            found = repr(char) if char else "the end"
            raise GrammarError(f"expected a value at position {self.pos}, found {found}")
        return _word_value(word)

    def _list(self, closing: str) -> list[Any]:
        self.pos += 1
        items: list[Any] = []
        self._skip()
        while self._peek() != closing:
            if self.pos >= self.end:
                raise GrammarError(f"a list is not closed with {closing!r}")
            items.append(self._value(nested=True))
            self._skip()
            if self._peek() == ",":
                self.pos += 1
                self._skip()
            elif self._peek() != closing:
                raise GrammarError(f"expected ',' or {closing!r} at position {self.pos}")
        self.pos += 1
        return items

    def _string(self, quote: str) -> str:
        out: list[str] = []
        self.pos += 1
        while self.pos < self.end:
            char = self.text[self.pos]
            self.pos += 1
            if char == quote:
                return "".join(out)
            if char == "\\" and self.pos < self.end:
                char = self.text[self.pos]
                self.pos += 1
                char = {"n": "\n", "t": "\t"}.get(char, char)
            out.append(char)
        raise GrammarError("a quoted string is not closed")

    def _word(self) -> str:
        start = self.pos
        while self.pos < self.end and self.text[self.pos] not in _SEPARATORS:
            self.pos += 1
        return self.text[start : self.pos].strip()

    def _skip(self) -> None:
        while self.pos < self.end and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < self.end else ""

    def _expect(self, char: str) -> None:
        if self._peek() != char:
            found = repr(self._peek()) if self._peek() else "the end"
            raise GrammarError(f"expected {char!r} at position {self.pos}, found {found}")
        self.pos += 1


def _word_value(word: str) -> Any:
    lowered = word.lower()
    if lowered in _WORDS:
        return _WORDS[lowered]
    if lowered == "nan":
        return NAN
    if word[0].isdigit() or word[0] in "+-.":
        try:
            return int(word)
        except ValueError:
            pass
        try:
            return float(word)
        except ValueError:
            pass
    return word
