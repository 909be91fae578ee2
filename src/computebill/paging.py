"""Lists read newest first, a page at a time, from an opaque cursor: the (created_at, id) of the
previous page's last row. The order list, the credit ledger, the audit log and the operators'
instance list page this way.

Each list's two statements (its newest rows; the rows older than a cursor) are built once at
import with bound parameters, so SQLAlchemy computes their cache keys once and every request only
binds values (docs/architecture.md §3, reads on hot paths).
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Query
from pydantic import BeforeValidator
from sqlalchemy import ColumnElement, DateTime, Integer, Row, Select, bindparam, or_, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import TypeEngine, Uuid

from computebill.errors import AppError

# The query parameters of a paged list, in the API and on the pages.
PageLimit = Annotated[int, Query(ge=1, le=100, description="Rows on a page")]
PageCursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page")
]

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day_as_written(value: object) -> object:
    """Only `YYYY-MM-DD` (or a date): pydantic's lax mode would also read `0` as a Unix time."""
    if isinstance(value, date) or (isinstance(value, str) and _DAY.fullmatch(value)):
        return value
    raise ValueError("Expected a day as YYYY-MM-DD.")


# A UTC day filtering a list, as its query parameter is documented (`format: date`).
FilterDay = Annotated[date, BeforeValidator(_day_as_written)]


class BadCursor(AppError):
    status = 422
    code = "invalid_cursor"


def encode_cursor(created_at: datetime, row_id: str) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(
    cursor: str, read_id: Callable[[str], object] = uuid.UUID
) -> tuple[datetime, object]:
    """The (created_at, id) a cursor names; `read_id` reads the id (a UUID, or a text id)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, row_id = raw.split("|")
        return datetime.fromisoformat(created_at), read_id(row_id)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadCursor("The cursor is not one this API gave out.") from error


def unless_null(
    column: ColumnElement[Any], name: str, type_: TypeEngine[Any]
) -> ColumnElement[bool]:
    """A list's optional filter: `column` equals the parameter `name`, or the parameter is NULL
    (the filter is off)."""
    return or_(bindparam(name, type_=type_).is_(None), column == bindparam(name, type_=type_))


@dataclass(frozen=True, slots=True)
class NewestFirst:
    """A list's statements: its newest rows, and the rows older than a cursor's. Both take the
    list's own parameters and `limit`; the second also `before_created_at` and `before_id`."""

    newest: Select[Any]
    older: Select[Any]
    read_id: Callable[[str], object]  # the cursor's id as the list's id column takes it


def newest_first(
    query: Select[Any], created_at: ColumnElement[datetime], row_id: ColumnElement[Any]
) -> NewestFirst:
    order = (created_at.desc(), row_id.desc())
    limit = bindparam("limit", type_=Integer)
    before = tuple_(
        bindparam("before_created_at", type_=DateTime(timezone=True)),
        bindparam("before_id", type_=row_id.type),
    )
    return NewestFirst(
        newest=query.order_by(*order).limit(limit),
        older=query.where(tuple_(created_at, row_id) < before).order_by(*order).limit(limit),
        read_id=uuid.UUID if isinstance(row_id.type, Uuid) else str,
    )


class Listed(Protocol):
    """A row of a list paged newest first: its time and its id (as text)."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> str: ...


ListedT = TypeVar("ListedT", bound=Listed)


async def read_page(
    db: AsyncConnection,
    statements: NewestFirst,
    parameters: Mapping[str, object],
    *,
    make: Callable[[Row[Any]], ListedT],
    limit: int,
    cursor: str | None,
) -> tuple[list[ListedT], str | None]:
    """One page of rows, newest first, from the API's or the page's cursor (one statement), and
    where the next (older) page starts: None on the last page."""
    if cursor is None:
        query, older = statements.newest, {}
    else:
        created_at, row_id = decode_cursor(cursor, statements.read_id)
        query = statements.older
        older = {"before_created_at": created_at, "before_id": row_id}
    found = await db.execute(query, {**parameters, "limit": limit + 1, **older})
    page = [make(row) for row in found]
    more = len(page) > limit
    del page[limit:]
    return page, encode_cursor(page[-1].created_at, page[-1].id) if more else None
