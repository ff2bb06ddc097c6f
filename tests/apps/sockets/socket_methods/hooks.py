"""socket_opened_method / socket_closed_method: count sockets, greet each one as it opens."""

COUNTS = {"opened": 0, "closed": 0}


def opened(socket):
    COUNTS["opened"] += 1
    socket.send_message({"hello": COUNTS["opened"]})


def closed(socket):
    COUNTS["closed"] += 1
