"""Lists anyone may ask for, read a page at a time.

The public's lists (answered opinions, published proposals) need no token, so a client
can ask for them as often as its address's budget allows. Read whole, each answer cost
what the view held: 0.13 s for 5,000 opinions on this project's test machine, growing with
every year kept, and twenty such requests at once held a health check up for 1.5 s. A page
costs what a page holds: at most ``limit`` documents shown and ``SCAN`` looked at.

The order is the view's key order: the order records were made in (ids of version 7,
``shared.domain.new_id``), but for those whose ids derive from where they came from (an
opinion converted from a proposal or sent over the e-government bus). The next page is
named by an HTTP ``Link`` header (RFC 8288, ``rel="next"``), so the body stays the list
it always was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from fastapi import Query, Request, Response

from shared.stores import ViewStore

#: Documents one request looks at, at most: a page of a list most of whose documents are not
#: shown (opinions not yet answered, say) may hold fewer than asked for, with a next link.
SCAN = 500

#: The query parameters of a paged list.
LIMIT = Query(100, ge=1, le=SCAN, description="At most this many items; the `Link` header (rel=\"next\") "
                                               "names the next page when there may be one")


def scan(views: ViewStore, view: str, prefix: str, after: str | None, limit: int,
         shown: Callable[[dict[str, Any]], dict[str, Any] | None]) -> tuple[list[dict[str, Any]], str | None]:
    """Up to ``limit`` items ``shown`` makes of the documents of ``view`` under ``prefix``
    that follow the key ``prefix + after``, and the ``after`` of the next page (None: no
    more). ``shown`` returns None for a document the list leaves out."""
    items: list[dict[str, Any]] = []
    key = prefix + after if after else ""
    looked = 0
    while True:
        asked = min(max(limit - len(items), 100), SCAN - looked)
        page = views.page(view, prefix, key, asked)
        for key, doc in page:
            looked += 1
            item = shown(doc)
            if item is not None:
                items.append(item)
                if len(items) == limit:
                    return items, key[len(prefix):]
        if len(page) < asked:
            return items, None  # the view's end
        if looked >= SCAN:
            return items, key[len(prefix):]


def link_next(request: Request, response: Response, after: str | None, **params: Any) -> None:
    """``Link: <path?...&after=…>; rel="next"`` on ``response`` when there may be a next page.

    The link is relative to the server (a path with its query), never built from the
    request's Host header, which the client chose."""
    if after is None:
        return
    query = urlencode({**{k: v for k, v in params.items() if v is not None}, "after": after})
    response.headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
