from toto.invocation import *


@authenticated
def invoke(handler, parameters):
    # The original's account.update: set fields, save, from a sync method.
    account = handler.session.get_account()
    for name, value in parameters.items():
        account[name] = value
    account.save()
    return {"updated_fields": sorted(parameters)}
