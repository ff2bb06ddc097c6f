"""Methods the core serves about the server itself (``toto.describe``; on with the ``describe`` option)."""
