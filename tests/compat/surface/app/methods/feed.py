from toto.invocation import *


@jsonp
def invoke(handler, params):
    return {"items": ["a", "ü", "</script>"], "limit": params.get("limit")}
