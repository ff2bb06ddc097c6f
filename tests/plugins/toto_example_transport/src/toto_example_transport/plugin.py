"""A third-party HTTP face: --http=example, one HTTP/1.0 request per connection over asyncio
streams. It only frames: each request goes to the server's one request path."""

import asyncio

from toto import hookimpl
from toto.http import TransportSpec
from toto.transports.request import build_request, collect_headers

SERVED_BY = "toto-example-transport"


class Writer:
    """How the answer's bytes leave (``toto.response.ResponseWriter``); the body ends with the connection."""

    def __init__(self, stream):
        self.stream = stream
        self.ended = asyncio.Event()

    def start(self, status, reason, headers, chunk, last):
        lines = [f"HTTP/1.0 {status} {reason}", f"Server: {SERVED_BY}"]
        lines += [f"{name}: {value}" for name, value in headers.get_all()]
        self.stream.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + chunk)
        if last:
            self.ended.set()

    def send(self, chunk, last):
        self.stream.write(chunk)
        if last:
            self.ended.set()

    def watch(self, callback):
        pass


class ExampleTransport:
    def __init__(self, server, application):
        self.server = server
        self.application = application
        self.listener = None

    async def listen(self, sockets):
        if sockets:
            self.listener = await asyncio.start_server(self.serve, sock=sockets[0])
        else:
            options = self.server.options
            self.listener = await asyncio.start_server(self.serve, options.address or None, int(options.port))

    def stop_listening(self):
        self.listener.close()

    async def close(self):
        self.listener.close()

    async def serve(self, reader, stream):
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers, size = collect_headers(tuple(s.strip() for s in line.split(":", 1)) for line in head[1:] if line)
            body = await reader.readexactly(int(headers.get("Content-Length") or 0))
            app = self.application
            request = build_request(method, target, headers, stream.get_extra_info("peername")[0], "http", False)
            writer = Writer(stream)
            handler = app.begin(request, writer, app.method_path(request.path), size)
            if not handler.finished:
                if body:
                    handler.data_received(body)
                if not handler.finished:
                    await handler.execute()
            await writer.ended.wait()
            await stream.drain()
        finally:
            stream.close()


@hookimpl
def toto_register_transports():
    return {"example": TransportSpec(ExampleTransport)}
