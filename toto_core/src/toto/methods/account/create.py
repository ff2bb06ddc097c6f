"""account.create: make an account and sign in; answers the new session."""

from toto import accounts
from toto.invocation import optionally_authenticated


@optionally_authenticated
async def invoke(handler, parameters):  # type: ignore[no-untyped-def]
    return await accounts.create(handler, parameters)
