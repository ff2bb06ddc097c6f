"""What the open and close hooks counted in this process."""

from socket_methods.hooks import COUNTS


def invoke(handler, parameters):
    return dict(COUNTS)
