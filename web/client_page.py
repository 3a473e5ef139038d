"""What a permalink's page shows and in what order: views, search, sorting, paid history by year.

A client comes for what they owe, so the page leads with it: the invoices still to pay
(credit notes with credit left among them) come first, in one table; the paid history
follows, folded by year once it is long. The list can be narrowed to a view — all, unpaid,
overdue — or to the invoices whose number holds what was searched for, and sorted by any
column; each is a plain link (``?view=overdue&sort=due&dir=asc``), so it works without a
script, can be bookmarked, and the browser's back button undoes it.

Pure: invoices and the query in, a :class:`Listing` of formatted rows out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Final, Literal
from urllib.parse import urlencode

from kashflow.models import Invoice
from permalink.presentation import InvoiceRow, format_money

View = Literal["all", "unpaid", "overdue"]
SortKey = Literal["number", "date", "due", "total", "outstanding"]
VIEWS: Final[tuple[View, ...]] = ("all", "unpaid", "overdue")
SORT_KEYS: Final[tuple[SortKey, ...]] = ("number", "date", "due", "total", "outstanding")
#: Paid invoices beyond this many are folded by year.
FOLD_AFTER: Final = 12
_MAX_SEARCH: Final = 10

_SORTS: Final[Mapping[SortKey, Callable[[Invoice], tuple[object, ...]]]] = {
    "number": lambda i: (i.number,),
    "date": lambda i: (i.issued, i.number),
    "due": lambda i: (i.due, i.number),
    "total": lambda i: (i.total, i.number),
    "outstanding": lambda i: (i.outstanding, i.number),
}


@dataclass(frozen=True, slots=True)
class Query:
    """The page's query string, read leniently: anything unknown is the default."""

    view: View = "all"
    search: str = ""
    sort: SortKey = "date"
    descending: bool = True

    @classmethod
    def read(cls, query: Mapping[str, str]) -> Query:
        view = query.get("view", "all")
        sort = query.get("sort", "date")
        search = "".join(c for c in query.get("q", "") if c.isdigit())[:_MAX_SEARCH]
        direction = query.get("dir", "")
        key: SortKey = sort if sort in SORT_KEYS else "date"
        descending = direction != "asc" if direction in ("asc", "desc") else key != "due"
        return cls(
            view=view if view in VIEWS else "all",
            search=search,
            sort=key,
            descending=descending,
        )

    def href(self, **changes: object) -> str:
        """This query with ``changes``, as ``?…`` after the page's path (defaults left
        out, so URLs stay short; ``""`` when all are defaults)."""
        values = {
            "view": self.view,
            "q": self.search,
            "sort": self.sort,
            "dir": "desc" if self.descending else "asc",
            **changes,
        }
        defaults = {"view": "all", "q": "", "sort": "date"}
        if values["sort"] == "date" and values["dir"] == "desc":
            values["dir"] = ""
        if values["sort"] == "due" and values["dir"] == "asc":
            values["dir"] = ""
        kept = {k: v for k, v in values.items() if v not in ("", None) and defaults.get(k) != v}
        return "?" + urlencode(kept) if kept else ""


@dataclass(frozen=True, slots=True)
class Column:
    """A sortable column's header: its link, and ``aria-sort`` when it is the sort."""

    key: SortKey
    href: str
    aria_sort: str


@dataclass(frozen=True, slots=True)
class YearGroup:
    year: int
    rows: tuple[InvoiceRow, ...]
    #: The year's invoiced total per currency, formatted.
    totals: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ViewLink:
    view: View
    href: str
    count: int
    current: bool


@dataclass(frozen=True, slots=True)
class Listing:
    """The rows of one page, grouped: to pay first, then paid (flat or by year)."""

    open_rows: tuple[InvoiceRow, ...]
    paid_rows: tuple[InvoiceRow, ...]
    years: tuple[YearGroup, ...]
    views: tuple[ViewLink, ...]
    columns: Mapping[str, Column]
    query: Query
    #: How many invoices the view and search left (before grouping).
    shown: int
    total: int

    @property
    def folded(self) -> bool:
        return bool(self.years)


def _in_view(invoice: Invoice, view: View, today: date) -> bool:
    if view == "unpaid":
        return invoice.outstanding != 0 and not invoice.paid
    if view == "overdue":
        return invoice.overdue(today)
    return True


def listing(
    invoices: Sequence[Invoice],
    query: Query,
    today: date,
    row: Callable[[Invoice], InvoiceRow],
    language: str,
) -> Listing:
    """Group, filter and sort ``invoices`` as the query asks; ``row`` formats each one."""
    counts = {view: sum(1 for i in invoices if _in_view(i, view, today)) for view in VIEWS}
    chosen = [i for i in invoices if _in_view(i, query.view, today)]
    if query.search:
        chosen = [i for i in chosen if query.search in str(i.number)]
    chosen.sort(key=_SORTS[query.sort], reverse=query.descending)
    still_open = [i for i in chosen if i.outstanding != 0 and not i.paid]
    settled = [i for i in chosen if not (i.outstanding != 0 and not i.paid)]
    fold = len(settled) > FOLD_AFTER and not query.search
    years: list[YearGroup] = []
    if fold:
        by_year: dict[int, list[Invoice]] = {}
        for invoice in settled:
            by_year.setdefault(invoice.issued.year, []).append(invoice)
        for year in sorted(by_year, reverse=True):
            group = by_year[year]
            sums: dict[str, Decimal] = {}
            for invoice in group:
                code = (invoice.currency or "GBP").upper()
                sums[code] = sums.get(code, Decimal(0)) + invoice.total
            years.append(
                YearGroup(
                    year,
                    tuple(row(i) for i in group),
                    tuple(format_money(v, c, language) for c, v in sums.items()),
                )
            )
    return Listing(
        open_rows=tuple(row(i) for i in still_open),
        paid_rows=() if fold else tuple(row(i) for i in settled),
        years=tuple(years),
        views=tuple(
            ViewLink(view, query.href(view=view, q=""), counts[view], view == query.view)
            for view in VIEWS
        ),
        columns={key: _column(query, key) for key in SORT_KEYS},
        query=query,
        shown=len(chosen),
        total=len(invoices),
    )


def _column(query: Query, key: SortKey) -> Column:
    if query.sort == key:
        return Column(
            key,
            query.href(sort=key, dir="asc" if query.descending else "desc"),
            "descending" if query.descending else "ascending",
        )
    # A new column starts the way a reader expects: due dates soonest first, else largest.
    return Column(key, query.href(sort=key, dir="asc" if key == "due" else "desc"), "")


__all__ = [
    "FOLD_AFTER",
    "SORT_KEYS",
    "VIEWS",
    "Column",
    "Listing",
    "Query",
    "View",
    "ViewLink",
    "YearGroup",
    "listing",
]
