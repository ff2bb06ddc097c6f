from toto.invocation import *


@raw_response
def invoke(handler, params):
    if params.get("as") == "csv":
        handler.response_type = "text/csv; charset=utf-8"
        return "name,count\nZoë,%s\n" % params.get("count", "1")
    return b"\x00\x01raw"
