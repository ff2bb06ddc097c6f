"""Which requests another site can make a visitor's browser send, and what they may not do.

One rule for every face (HTTP on Tornado, granian and uvicorn, and WebSocket handshakes),
decided here and nowhere else (PROTOCOL.md sections 3 and 9):

- ``AllowedOrigins`` is the ``allow_origin`` option read once: ``*`` or origins separated
  by commas and/or spaces. Credentialed CORS (``toto.cookies``) and sockets read this one
  object, so an origin listed for one is listed for the other.
- ``AllowedOrigins.admits(headers)`` says whether a request may run with the session its
  cookie names (and be given a cookie): only when it comes from the server's own pages or
  a listed origin, or from a client that is not another site's page. A page of another
  site can make the browser send a navigation, a form post, a ``<script>`` or a WebSocket
  handshake with the visitor's cookie, but it cannot set the headers below, so:

  1. ``Sec-Fetch-Site: same-origin`` or ``none`` (typed, bookmarked): admitted.
  2. An ``Origin`` header decides when there is one: the server's own (its host, as the
     ``Host`` header names it) or a listed origin; ``null`` and any other are refused.
  3. Without ``Sec-Fetch-Site`` and ``Origin`` (an old browser, or no browser at all),
     what no page of another site can send without an ``Origin`` admits the request: a
     WebSocket handshake (browsers always send ``Origin`` with one), a header of
     ``CUSTOM_HEADERS``, or a body type a form cannot send (``application/json``,
     msgpack...: a page sends those only after a CORS preflight, which carries ``Origin``).
  4. Else a ``Referer`` of the server's own or a listed origin admits it; nothing else does.

  A browser that sends ``Sec-Fetch-Site: cross-site`` or ``same-site`` with no admitted
  ``Origin`` is refused at step 4 unless its ``Referer`` is admitted (a link from a listed
  origin). ``allow_origin=*`` lists no origin: the server's own pages only.
- ``callable_by_get(name)``: ``account.*`` are never served by GET or HEAD (a link would
  sign the visitor in as someone else, and put a password in URLs and logs).

What a refused request gets is the face's: an HTTP call runs as if no cookie had come
(``handler.session`` None, so ``@authenticated`` answers 1004) and its answer sets and
clears no cookie; a WebSocket handshake that carries a cookie is refused (403).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

#: Headers no page of another site can make a browser send without a CORS preflight
#: (which carries ``Origin``): a request without ``Origin`` that has one is not such a page's.
CUSTOM_HEADERS = ("X-Requested-With", "X-Toto-Hmac", "X-Toto-Timestamp")
#: The body types an HTML form (or a no-cors fetch) can send to another site.
_FORM_BODY_TYPES = frozenset(("application/x-www-form-urlencoded", "multipart/form-data", "text/plain"))
_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def normalize_origin(origin: str) -> str:
    """``HTTPS://App.Example:443/`` -> ``https://app.example``: scheme and host lower-cased,
    a default port and a trailing slash dropped, so a listed origin matches what browsers send."""
    text = origin.strip().rstrip("/").lower()
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    host, colon, port = rest.rpartition(":")
    if colon and "]" not in port and _DEFAULT_PORTS.get(scheme) == port:
        rest = host
    return f"{scheme}://{rest}"


def _origin_of(url: str) -> str | None:
    """The origin (``scheme://host[:port]``) of a URL such as a ``Referer``, or None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


class AllowedOrigins:
    """The ``allow_origin`` option, parsed once for CORS and sockets alike.

    ``any``: ``*`` was given (CORS answers ``*``; never credentials, never a cookie for a
    foreign page). ``listed``: the origins given by name, normalized (``normalize_origin``).
    """

    __slots__ = ("any", "listed")

    def __init__(self, text: str) -> None:
        parts = str(text or "").replace(",", " ").split()
        self.any = "*" in parts
        self.listed = frozenset(normalize_origin(p) for p in parts if p != "*")

    def lists(self, origin: str | None) -> bool:
        """Whether ``origin`` is one of the origins given by name."""
        return origin is not None and normalize_origin(origin) in self.listed

    def trusts(self, origin: str | None, host: str | None) -> bool:
        """The server's own origin (the ``Host`` the request was sent to) or a listed one.
        The scheme is not compared for the server's own: behind a proxy that ends TLS the
        server cannot tell (the same choice Tornado makes)."""
        if not origin or origin == "null":
            return False
        if self.lists(origin):
            return True
        netloc = urlsplit(origin).netloc.lower() if "://" in origin else ""
        return bool(netloc) and bool(host) and netloc == str(host).lower()

    def admits(self, headers: Mapping[str, str]) -> bool:
        """Whether a request with these headers may use the visitor's session cookie (see
        the module docstring for the steps)."""
        site = headers.get("Sec-Fetch-Site")
        if site == "same-origin" or site == "none":
            return True
        host = headers.get("Host")
        origin = headers.get("Origin")
        if origin is not None:
            return self.trusts(origin, host)
        if site is None and _not_from_a_page(headers):
            return True
        referer = headers.get("Referer")
        return referer is not None and self.trusts(_origin_of(referer), host)


def _not_from_a_page(headers: Mapping[str, str]) -> bool:
    """What a page of another site cannot make a browser send without an ``Origin`` header."""
    if "Sec-WebSocket-Key" in headers:
        return True
    if any(name in headers for name in CUSTOM_HEADERS):
        return True
    content_type = headers.get("Content-Type")
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() not in _FORM_BODY_TYPES


def callable_by_get(method_name: str) -> bool:
    """``account.*`` only by POST: a GET is a link any site can make a browser follow (and
    its query, a password, lands in URLs, histories and logs)."""
    return not method_name.startswith("account.")
