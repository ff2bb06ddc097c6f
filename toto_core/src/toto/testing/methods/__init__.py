"""The method package of the servers the contract kit starts (``--method_module=toto.testing.methods``).

Besides the built-in account methods it holds what the kit's tests call: ``whoami``,
``account_fields`` (the account as stored), ``counter.increment`` (a read-modify-write of
the session state), ``db`` (the type of the storage's native handle), ``echo`` (its
parameters back), and for the transport contract ``marks.add``/``marks.seen`` (whether a
request ran), ``in_flight`` (how many requests the server has begun and not ended) and
``hold`` (never answers).
"""
