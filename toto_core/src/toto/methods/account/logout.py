"""account.logout: end the caller's session."""

from toto import accounts
from toto.invocation import authenticated


@authenticated
async def invoke(handler, parameters):
    return await accounts.logout(handler, parameters)
