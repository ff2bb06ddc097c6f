"""The original's ``toto.session``: ``TotoSession``, ``SESSION_ID_LENGTH`` and its serializer.

``TotoSession`` is Toto's session class (``handler.session`` is one). It may also be made
the original's way from a session's data, ``TotoSession(db, session_data)`` with
``session_data`` a dict of ``session_id``, ``user_id``, ``expires`` and optionally
``state`` and ``key`` (what ``session.session_data()`` returns): such a session is not
attached to a server (its ``save()`` raises), for code that keeps sessions itself, like
``toto.clientsessioncache``.

``TotoSession.dumps`` / ``loads`` serialize a session's data with the serializer chosen by
``TotoSession.set_serializer(module)``: ``json`` (the default), ``msgpack``, or ``pickle``.
Pickle runs code while loading, so it is the application's own choice for its own storage
(a warning says so), never the default, and never used on anything a client sends: the
server's session state uses ``state_serializer`` (never pickle) and
``toto.clientsessioncache`` always uses JSON.
"""

from __future__ import annotations

from toto.sessions import SESSION_ID_LENGTH, Session

__all__ = ["SESSION_ID_LENGTH", "TotoSession"]

TotoSession = Session
