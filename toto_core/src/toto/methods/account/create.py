"""account.create: make an account and sign in; answers the new session."""

from toto import accounts
from toto.invocation import optionally_authenticated


@optionally_authenticated
async def invoke(handler, parameters):
    return await accounts.create(handler, parameters)
