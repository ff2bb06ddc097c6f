"""A signed-in user's secret, also as JSONP (``?jsonp=callback``): what no other site may read."""

from toto.invocation import authenticated, jsonp


@jsonp
@authenticated
def invoke(handler, parameters):
    return {"user_id": handler.session.user_id, "secret": "only-for-" + handler.session.user_id}
