"""Describes a multipart call in the original's shape: ``{"arguments": {name: [values]},
"files": {name: [upload]}}`` (file bodies arrive as bytes)."""


def invoke(handler, parameters):
    described = {name: values[-1] for name, values in parameters["arguments"].items()}
    for name, uploads in parameters["files"].items():
        upload = uploads[0]
        described[name] = {
            "filename": upload["filename"],
            "content_type": upload["content_type"],
            "text": upload["body"].decode("utf-8"),
        }
    return described
