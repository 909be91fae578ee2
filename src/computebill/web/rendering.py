"""Answering a page request: a template in the site's layout, or a redirect that htmx follows."""

from __future__ import annotations

from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from computebill.web import templates


class Viewer(Protocol):
    """Who a page is rendered for, as the layout reads it (the header, the forms)."""

    @property
    def signed_in(self) -> bool: ...

    @property
    def cart_count(self) -> int: ...

    @property
    def csrf_token(self) -> str: ...

    @property
    def balance_cents(self) -> int | None: ...

    @property
    def credit_stopped(self) -> bool: ...


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    visitor: Viewer,
    status_code: int = 200,
) -> HTMLResponse:
    """A page in the site's layout, for this visitor. Signed-in pages are never cached."""
    response = templates.TemplateResponse(
        request, template, {"visitor": visitor, **context}, status_code=status_code
    )
    if visitor.signed_in:
        response.headers["Cache-Control"] = "no-store"
    return response


def redirect(url: str, request: Request) -> Response:
    """See Other for a form post; htmx follows HX-Redirect instead of swapping the target."""
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def render_refused_form(
    request: Request,
    context: dict[str, Any],
    *,
    fragment: str,
    page: str,
    visitor: Viewer,
    status_code: int,
) -> HTMLResponse:
    """A form sent back with its error: for htmx the form alone, with a 200 so htmx swaps it in;
    else `page`, a page around it, with the refusal's status."""
    if request.headers.get("hx-request") == "true":
        return render(request, fragment, context, visitor=visitor)
    return render(request, page, context, visitor=visitor, status_code=status_code)
