"""URLs as they may be shown: in logs and in error messages a user reads."""

from __future__ import annotations


def redact_url(url: str) -> str:
    """``url`` without its password (``scheme://user:***@host/...``), for logs and error messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user + ':***@' if user else '***@'}{host}"
    return url
