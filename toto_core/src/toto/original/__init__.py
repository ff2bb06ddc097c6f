"""The seed surface: what method code, config files and applications written for the original
Toto use, over the pipeline's public interfaces.

- ``seed``: ``SeedHandler``, the original ``TotoHandler``'s methods (``get_argument``,
  cookies, ``redirect``, ``db_connection``, the class-level hooks), which ``TotoHandler``
  inherits: **the one seam** through which the request path (``toto.handler``,
  ``toto.websocket``, ``toto.pipeline``, ``toto.calls``, ``toto.context``, the transports)
  reaches this package (it also names ``DBConnection`` and ``Pending`` for them).
- ``options``: the original's options, defined by the core's plugin (``toto.builtins``) and
  served by the server at startup (``event_init_module``, ``startup_function``).
- ``hooks``: ``set_before_handler`` / ``set_after_handler`` riding on the invoke hooks.
- ``dbconnection``, ``session``, ``secret``, ``tasks``, ``clientsessioncache``: the
  original's modules of those names; ``toto.dbconnection``, ``toto.session``,
  ``toto.secret``, ``toto.tasks`` and ``toto.clientsessioncache`` are the same modules
  under the original's import paths.
- ``account`` (``session.get_account()``), ``sessioncache`` (``set_session_cache``),
  ``keysigning`` (``hmac_enabled``'s per-session key), ``gencompat`` (``tornado.gen.Task``
  for Tornado 4 code): features the core carries, each in the module here that holds it.

This package's own ``__init__`` imports nothing: ``import toto`` loads ``gencompat`` alone.
"""
