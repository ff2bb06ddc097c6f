import asyncio

from toto import hookimpl
from toto.http import Response, Route


@hookimpl
def toto_register_routes(server):
    def hello(request):
        return Response.json(
            {
                "database": server.options.database,
                "path": request.path,
                "route_path": request.route_path,
                "query": request.query_arguments,
                "agent": request.headers.get("user-agent"),
            }
        )

    async def echo(request):
        await asyncio.sleep(0)
        return Response(201, request.body[::-1], {"Content-Type": "application/octet-stream", "X-Seen": "yes"})

    return [Route("_hello", hello), Route("/echo/", echo, methods=("POST",))]
