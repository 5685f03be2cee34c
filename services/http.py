"""The web-serving helpers, kept here under their old name for the services' imports."""

from __future__ import annotations

from shared.web import bind, serve

__all__ = ["bind", "serve"]
