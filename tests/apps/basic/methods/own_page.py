"""A page of the server's own (tests/browser/test_cross_site_browser.py): it signs up with a JSON
POST to its own origin, which sets the session cookie, uses a socket with that cookie, reports
to ``?reports=<url>`` and goes on to ``?next=<url>``, another site's page."""

from toto.invocation import raw_response

PAGE = """<!doctype html><meta charset="utf-8"><title>own page</title><script type="module">
const args = new URLSearchParams(location.search);
const send = (body) => fetch(args.get("reports"), {method: "POST", mode: "no-cors", body: JSON.stringify(body)});
function socketUser() {
  return new Promise((resolve) => {
    const socket = new WebSocket(location.origin.replace("http", "ws") + "/websocket");
    socket.onopen = () => socket.send(JSON.stringify({id: 1, method: "whoami", parameters: {}}));
    socket.onmessage = (e) => {
      const m = JSON.parse(e.data);
      resolve(m.result ? m.result.user_id : m.error);
      socket.close();
    };
    socket.onclose = (e) => resolve("closed " + e.code);
  });
}
try {
  const created = await (await fetch("/", {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({
      method: "account.create",
      parameters: {user_id: args.get("user"), password: "a long secret"},
    }),
  })).json();
  await send({page: "own", created: created.result && created.result.user_id, socket: await socketUser()});
  location.href = args.get("next");
} catch (error) {
  await send({page: "own", error: String(error)});
}
</script>"""


@raw_response
def invoke(handler, parameters):
    handler.response_type = "text/html; charset=utf-8"
    return PAGE
