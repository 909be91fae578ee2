"""Server-rendered pages: templates, static files and the helpers templates may call."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from fastapi.templating import Jinja2Templates

from computebill.money import format_millicents, format_money

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

templates = Jinja2Templates(directory=HERE / "templates")


@cache
def asset_url(name: str) -> str:
    """The URL of a static file with its content hash, so a changed file is never served stale."""
    path = STATIC_DIR / name
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.exists() else "missing"
    return f"/static/{name}?v={digest}"


templates.env.globals["asset_url"] = asset_url
templates.env.filters["money"] = format_money
templates.env.filters["rate"] = format_millicents
