"""The demo: a small notes API on Toto. Run ``python app.py`` (or ``nox -s demo``)."""

from toto import TotoServer

HOW_TO_CALL = """
Toto demo serving on http://127.0.0.1:{port}

Try it (in another shell):
  curl -s http://127.0.0.1:{port}/hello?name=you
  curl -s -X POST http://127.0.0.1:{port}/ -H 'content-type: application/json' \\
       -d '{{"method": "account.create", "parameters": {{"user_id": "me@example.com", "password": "secret"}}}}'
  python -m toto.cli call http://127.0.0.1:{port} hello '{{"name": "client"}}'
Signed calls (notes.add, notes.list) need a session and an x-toto-hmac header:
see README.md, "Calling a server", or use toto.client.TotoClient.
"""


def main() -> None:
    server = TotoServer(method_module="methods", address="127.0.0.1")
    print(HOW_TO_CALL.format(port=server.options.port), flush=True)
    server.run()


if __name__ == "__main__":
    main()
