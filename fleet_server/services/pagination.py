"""Offset pagination for list queries."""

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

DEFAULT_PAGE_LIMIT = 100
MAX_PAGE_LIMIT = 500

ItemT = TypeVar("ItemT")


@dataclass(frozen=True)
class PageResult(Generic[ItemT]):
    items: list[ItemT]
    total: int
    limit: int
    offset: int


def fetch_page(
    session: Session, statement: Select[ItemT], *, limit: int, offset: int
) -> PageResult[ItemT]:
    """Run ``statement`` for one page and count all rows it matches.

    The statement must have a deterministic ORDER BY, or pages may overlap.
    """
    count_statement: Select[Any] = select(func.count()).select_from(
        statement.order_by(None).subquery()
    )
    total = session.scalar(count_statement) or 0
    items = list(session.scalars(statement.limit(limit).offset(offset)))
    return PageResult(items=items, total=total, limit=limit, offset=offset)
