"""account.update: change the password and/or account fields (the current password is required)."""

from toto import accounts
from toto.invocation import authenticated


@authenticated
async def invoke(handler, parameters):
    return await accounts.update(handler, parameters)
