"""The one logging set-up of every entry point: structured lines with no secret in them.

``hpo-services``, ``hpo-edge`` (harvester and node agents) and the embedded default call
:func:`setup_logging` once; every record of every library then leaves through one
handler whose :class:`StructuredFormatter` writes one line per record, ``key=value``
(logfmt, the default) or JSON (``HPO_LOG_FORMAT=json``)::

    ts=2026-12-02T10:00:00.123Z level=WARNING logger=edge.harvester.api
    msg="PUT https://s3/b/k?X-Amz-Signature=[redacted] failed (503: busy); retry 1 in 0.5s"

(one line in the log; broken here for width).

Redaction is done there, on the finished text of the message *and* of the traceback,
so it covers what any caller logs, however it was formatted, and exception messages
that quote a URL or a header. :func:`redact` removes:

* this service's tokens (``hpo_`` + the secret) wherever they appear;
* the path segment after a Hopaas endpoint (``/api/ask/<token>`` ...), whatever the
  token looks like: a client may send a token of another server;
* ``Bearer <credential>`` (an ``Authorization`` header quoted in an error);
* passwords in URLs (``amqp://user:<password>@``, ``mongodb://``, ``s3://key:<secret>@``);
* the signing parts of presigned URLs: ``X-Amz-Signature``, ``X-Amz-Credential``,
  ``X-Amz-Security-Token``, the file store's ``sig``, and parameters named like
  ``token``, ``key``, ``secret`` or ``password``.

What it cannot know is a secret that looks like nothing in particular (a password
in free text): code must not log those in the first place.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from shared.config import LogSettings

REDACTED = "[redacted]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"hpo_[A-Za-z0-9_-]{8,}"), f"hpo_{REDACTED}"),
    (
        re.compile(r"(/api/(?:ask|tell|should_prune|mark_as_failed|get_best_trial)/)[^/?#\s\"']+"),
        rf"\g<1>{REDACTED}",
    ),
    (re.compile(r"(?i)(\bbearer\s+)[^\s\"',;]+"), rf"\g<1>{REDACTED}"),
    (
        re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@\"']*:)[^@\s/\"']+@"),
        rf"\g<1>{REDACTED}@",
    ),
    (
        re.compile(
            r"(?i)([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig"
            r"|[a-z0-9_-]*token|[a-z0-9_-]*key|[a-z0-9_-]*secret|password|awsaccesskeyid)=)"
            r"[^&\s\"'#]+"
        ),
        rf"\g<1>{REDACTED}",
    ),
)


def redact(text: str) -> str:
    """``text`` with every token, credential and URL signature replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


_BARE = re.compile(r"^[^\s\"=\\]+$")


def _logfmt_value(value: str) -> str:
    if value and _BARE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class StructuredFormatter(logging.Formatter):
    """One line per record: time, level, logger, message and any traceback, redacted."""

    def __init__(self, style: Literal["kv", "json"] = "kv") -> None:
        super().__init__()
        self._json = style == "json"

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        fields = {
            "ts": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        if record.exc_info:
            fields["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            fields["exc"] = redact(record.exc_text)
        if record.stack_info:
            fields["stack"] = redact(self.formatStack(record.stack_info))
        if self._json:
            return json.dumps(fields, ensure_ascii=False)
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in fields.items())


UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
QUIET_LOGGERS = ("httpx", "httpcore", "aio_pika", "aiormq", "pymongo", "uvicorn.error")
"""Libraries that log every request, connection or start-up step at INFO; they log at
WARNING (uvicorn's tracebacks are errors and still show)."""


def setup_logging(settings: LogSettings, stream: TextIO | None = None) -> logging.Handler:
    """Send every record through one redacting, structured handler; returns it.

    Replaces the root logger's handlers, so calling it again (a test, a re-exec) does
    not duplicate lines.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(StructuredFormatter(settings.format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
    for name in UVICORN_LOGGERS:  # uvicorn's own set-up gives them handlers of their own
        library = logging.getLogger(name)
        for old in list(library.handlers):
            library.removeHandler(old)
        library.propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    access = logging.getLogger("uvicorn.access")
    access.setLevel(logging.INFO if settings.access else logging.WARNING)
    return handler


def ensure_logging(settings: LogSettings) -> None:
    """:func:`setup_logging` unless the process already has a handler (embedded use
    inside a program that set up its own logging)."""
    if not logging.getLogger().handlers:
        setup_logging(settings)


__all__ = [
    "REDACTED",
    "StructuredFormatter",
    "ensure_logging",
    "redact",
    "setup_logging",
]
