"""The socket method package's answer (socket_method_module=socket_methods)."""


def invoke(handler, parameters):
    return {"package": "socket_methods"}
