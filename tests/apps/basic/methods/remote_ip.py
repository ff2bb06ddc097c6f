"""Answers the caller's address as the server sees it (``--xheaders`` trusts a proxy's headers)."""


def invoke(handler, parameters):
    return {"remote_ip": handler.request.remote_ip}
