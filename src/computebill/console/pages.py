"""The operator's console as pages (`/admin/…`), in the site's look: the same services as the
JSON API under `/api/v1/admin`, the role checked on the server for every page and form."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from computebill.auth.browser import verify_csrf

router = APIRouter(include_in_schema=False, dependencies=[Depends(verify_csrf)])
