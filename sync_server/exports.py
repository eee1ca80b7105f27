"""Streamed exports (issue 8)."""

from __future__ import annotations


def init_app(app) -> None:
    """Register the export routes."""
