"""account.logout: end the caller's session."""

from toto import accounts
from toto.invocation import authenticated


@authenticated
async def invoke(handler, parameters):  # type: ignore[no-untyped-def]
    return await accounts.logout(handler, parameters)
