"""Paper cards (issue 10)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("paper", __name__)
