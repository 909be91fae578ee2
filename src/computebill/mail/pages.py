"""Development only: the e-mail `computebill up` caught (docs/architecture.md §2), at
`/_dev/mail`. The app mounts these routes only when DEV_MAIL_DIR is set, and answers only
requests from this machine: what they show includes every link a message carries."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from computebill.deps import SettingsDep
from computebill.http_guards import from_loopback
from computebill.mail.caught import CaughtMail, caught_mail, caught_message
from computebill.mail.compose import linked
from computebill.web import templates

# The HTML part, shown in a sandboxed frame of the message's page: its own styles only, nothing
# loaded, links opened in a new tab (the frame may not navigate).
HTML_PART_POLICY = "default-src 'none'; style-src-attr 'unsafe-inline'; img-src data:; " + (
    "frame-ancestors 'self'"
)
NEW_TAB_LINKS = '<base target="_blank">'


def _from_this_machine(request: Request) -> None:
    if not from_loopback(request):
        raise HTTPException(404)


router = APIRouter(include_in_schema=False, dependencies=[Depends(_from_this_machine)])


def _directory(settings: SettingsDep) -> Path:
    assert settings.dev_mail_dir is not None  # mounted only when set
    return Path(settings.dev_mail_dir)


def _json(messages: list[CaughtMail]) -> JSONResponse:
    return JSONResponse(
        {"messages": [{**asdict(m), "received_at": m.received_at.isoformat()} for m in messages]}
    )


def _page(request: Request, template: str, context: dict[str, Any]) -> HTMLResponse:
    return templates.TemplateResponse(
        request, template, {"visitor": None, **context}, headers={"Cache-Control": "no-store"}
    )


def _message(settings: SettingsDep, mail_id: str) -> CaughtMail:
    message = caught_message(_directory(settings), mail_id)
    if message is None:
        raise HTTPException(404)
    return message


@router.get("/_dev/mail.json")
def mail_json(settings: SettingsDep) -> JSONResponse:
    """Every caught message, newest first, with its text and HTML parts."""
    return _json(caught_mail(_directory(settings)))


@router.get("/_dev/mail", response_model=None)
def mail_list(request: Request, settings: SettingsDep) -> Response:
    messages = caught_mail(_directory(settings))
    if "application/json" in request.headers.get("accept", ""):
        return _json(messages)
    return _page(request, "dev_mail.html", {"messages": messages})


@router.get("/_dev/mail/{mail_id}", response_class=HTMLResponse)
def mail_message(request: Request, settings: SettingsDep, mail_id: str) -> HTMLResponse:
    message = _message(settings, mail_id)
    return _page(
        request, "dev_mail_message.html", {"message": message, "text": linked(message.text)}
    )


@router.get("/_dev/mail/{mail_id}/html", response_class=HTMLResponse)
def mail_html_part(settings: SettingsDep, mail_id: str) -> HTMLResponse:
    message = _message(settings, mail_id)
    if message.html is None:
        raise HTTPException(404)
    html = message.html
    html = (
        html.replace("<head>", "<head>" + NEW_TAB_LINKS, 1)
        if "<head>" in html
        else (NEW_TAB_LINKS + html)
    )
    return HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": HTML_PART_POLICY,
            "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "no-store",
        },
    )
