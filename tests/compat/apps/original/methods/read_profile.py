from toto.invocation import *


@authenticated
async def invoke(handler, parameters):
    account = await handler.session.get_account()
    return {name: account[name] for name in parameters["names"]}
