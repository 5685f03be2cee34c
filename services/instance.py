"""A name for this process where it holds a lease others can see (a segment's steering,
a task's build lock): unique, and telling an operator where it runs."""

from __future__ import annotations

import os
import secrets
import socket


def instance_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
