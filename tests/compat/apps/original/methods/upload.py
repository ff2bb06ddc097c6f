def invoke(handler, parameters):
    files = {
        name: [[f["filename"], f["content_type"], f["body"].decode()] for f in uploads]
        for name, uploads in parameters["files"].items()
    }
    return {"arguments": parameters["arguments"], "files": files}
