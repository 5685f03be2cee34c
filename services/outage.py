"""Telling "a server is away for now" from a bug or a refusal.

A service meets these errors while RabbitMQ, the database or the artifact store is down
or restarting: at start (it waits for the server), in a reconcile pass or a bus handler
(retried in place), in a request (the api answers 503 with Retry-After). Every other
error is a bug or a refusal, and retrying it blindly would only hide it: a wrong
password, for one, is reported, not retried.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import aiormq.exceptions
import urllib3.exceptions
from aio_pika.exceptions import ChannelInvalidStateError
from pymongo.errors import ConnectionFailure, PyMongoError

from shared.bus import BusUnavailableError, RequestLostError

_MAX_REASON = 300


def is_outage(exc: BaseException) -> bool:
    """Whether ``exc`` means a server could not be reached (retrying may help)."""
    if isinstance(exc, aiormq.exceptions.ProbableAuthenticationError):
        return False
    if isinstance(exc, PyMongoError):
        return isinstance(exc, ConnectionFailure) or exc.has_error_label("RetryableWriteError")
    return isinstance(
        exc,
        BusUnavailableError
        | RequestLostError
        | aiormq.exceptions.AMQPConnectionError
        | ChannelInvalidStateError
        | ConnectionError
        | urllib3.exceptions.HTTPError,
    )


def describe(exc: BaseException) -> str:
    """One short line: the error's type and the first line of its text.

    PyMongo's server-selection errors append the whole topology description; only the
    part before it says anything to an operator.
    """
    text = str(exc).split("\n", 1)[0].split(", Timeout:", 1)[0].split(" Topology Description", 1)[0]
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 3] + "..."


def location(url: str) -> str:
    """``url`` without credentials and query, for logs."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


class OneLineOutages(logging.Filter):
    """Turns the bus and database clients' tracebacks of a lost connection into one line.

    aiormq logs the traceback of every dropped connection; during a broker restart that
    is pages of log for an event the service handles (it reconnects). The record keeps
    its level and gains the error's one-line description instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and is_outage(record.exc_info[1]):
            record.msg = f"{record.getMessage()} ({describe(record.exc_info[1])})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True
