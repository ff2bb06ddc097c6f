"""Answers what ``handler.request.headers`` shows a method through Tornado's ``HTTPHeaders``
interface, as method code of the original reads it (py2-compatible, like every method here)."""


def invoke(handler, parameters):
    headers = handler.request.headers
    names = parameters.get("names", [])
    copied = headers.copy()
    copied["X-Added-To-Copy"] = "yes"
    return {
        "get": dict((name, headers.get(name)) for name in names),
        "item": dict((name, headers[name]) for name in names if name in headers),
        "in": dict((name, name in headers) for name in names),
        "list": dict((name, headers.get_list(name)) for name in names),
        "all": sorted([name, value] for name, value in headers.get_all() if name.startswith("X-")),
        "keys": sorted(name for name in headers.keys() if name.startswith("X-")),
        "copy_is_apart": "X-Added-To-Copy" not in headers and copied.get("x-added-to-copy") == "yes",
        "default": headers.get("X-Not-Sent", "none"),
    }
