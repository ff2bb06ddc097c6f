"""What a Toto process says on its terminal: an error as one line, and the log's format.

Every layer that runs a server (``toto.cli`` on top; ``toto.server``, ``toto.daemon``,
``toto.supervisor`` and ``toto.reloader`` below it) fails and logs the same way, so the
two live here, under all of them, rather than in the command line that they would
otherwise import upwards.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

from toto.accesslog import JsonFormatter
from toto.redaction import RedactingFilter


def exit_with_error(message: str, status: int = 2) -> NoReturn:
    """Print ``toto: error: <message>`` as one line on stderr and exit: status 2 for a bad
    command line or configuration, 1 for a failure to do what was asked."""
    print(f"toto: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def setup_logging(level: str, log_format: str = "text") -> None:
    """Log at ``level`` (``none`` turns logging off) to stderr, as text or one JSON object a
    line, with secret query parameters redacted whoever logs them (``toto.redaction``)."""
    if level == "none":
        logging.disable(logging.CRITICAL)
        return
    handler = logging.StreamHandler(sys.stderr)
    # Whatever logs a request target (Toto, Tornado, a plugin, the application) does not write its secrets.
    handler.addFilter(RedactingFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    # Tornado's per-request access log is noise at info level.
    logging.getLogger("tornado.access").setLevel(logging.WARNING)
