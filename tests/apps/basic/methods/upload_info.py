"""Describes form fields and uploaded files (file bodies arrive as bytes)."""


def invoke(handler, parameters):
    described = {}
    for name, value in parameters.items():
        if isinstance(value, dict) and "body" in value:
            described[name] = {
                "filename": value["filename"],
                "content_type": value["content_type"],
                "text": value["body"].decode("utf-8"),
            }
        else:
            described[name] = value
    return described
