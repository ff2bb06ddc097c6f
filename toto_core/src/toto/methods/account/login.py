"""account.login: check the password and open a new session."""

from toto import accounts
from toto.invocation import optionally_authenticated


@optionally_authenticated
async def invoke(handler, parameters):
    return await accounts.login(handler, parameters)
