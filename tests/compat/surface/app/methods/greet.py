from toto.invocation import *


@default_parameters({"name": "world", "tags": []})
def invoke(handler, params):
    params["tags"].append("seen")
    return {"greeting": "hello " + params["name"], "tags": params["tags"]}
