// toto-client's sockets against real Toto servers of tests/apps/basic with use_web_sockets, started by
// tests/websocket/test_js_client.py: TOTO_WS_USER_ID, TOTO_WS_SESSION_KEY and TOTO_WS_OFF name one per hmac_mode.
// Node 20 runs it with --experimental-websocket (Node 22+ and browsers have WebSocket anyway).
import assert from "node:assert/strict";
import { test } from "node:test";

import { TotoClient, TotoError } from "../src/toto-client.js";

const SERVERS = {
  user_id: process.env.TOTO_WS_USER_ID,
  session_key: process.env.TOTO_WS_SESSION_KEY,
  off: process.env.TOTO_WS_OFF,
};
let users = 0;
const newUser = (mode) => `JS-Socket-${mode}-${process.pid}-${++users}`;

for (const [mode, url] of Object.entries(SERVERS)) {
  test(`${mode}: calls, out-of-order answers, signed calls, batch, pushes, logout closes`, { skip: !url }, async () => {
    const client = new TotoClient(url, { hmacMode: mode });
    const socket = await client.connect();
    const [slow, quick] = [socket.call("sleep", { seconds: 0.5 }), socket.call("echo", { é: "✓" })];
    const order = [];
    slow.then(() => order.push("slow"));
    quick.then(() => order.push("quick"));
    assert.deepEqual(await Promise.all([slow, quick]), [{ slept: 0.5 }, { é: "✓" }]);
    assert.deepEqual(order, ["quick", "slow"], "the quick call answered first");

    await assert.rejects(socket.call("whoami"), (error) => error instanceof TotoError && error.code === 1004);
    const user = newUser(mode);
    const created = await socket.create(user, "a long secret");
    assert.equal(created.user_id, user.toLowerCase());
    assert.equal(mode === "session_key", typeof created.key === "string");
    const many = await Promise.all(Array.from({ length: 10 }, () => socket.call("whoami")));
    assert.deepEqual(many, Array(10).fill({ user_id: user.toLowerCase() }));
    const batch = await socket.batch({ w: { method: "whoami" }, e: { method: "echo", parameters: { n: 1 } } });
    assert.deepEqual(batch, { w: { result: { user_id: user.toLowerCase() } }, e: { result: { n: 1 } } });

    const heard = [];
    let pushed;
    const got = new Promise((resolve) => { pushed = resolve; });
    const subscribed = await socket.subscribe("js-news", (data, name) => { heard.push([name, data]); pushed(); });
    assert.deepEqual(subscribed, ["js-news"]);
    await socket.call("events.send", { name: "js-news", args: { text: "日本" } });
    await Promise.race([got, socket.closed]);
    assert.deepEqual(heard[0], ["js-news", { text: "日本" }]);
    assert.equal(typeof socket.position.epoch, "string");
    const seen = socket.position;
    assert.deepEqual(await socket.unsubscribe(), []);
    // Missed while unsubscribed; these servers' local bus keeps no history: a resubscription is told of the gap.
    await socket.call("events.send", { name: "js-news", args: { text: "missed" } });
    await socket.subscribe("js-news", () => {}, { since: seen });
    assert.equal(socket.recovered, false);
    assert.deepEqual(await socket.unsubscribe(), []);

    // A second socket names the stored session in its first message.
    const second = await client.connect();
    assert.deepEqual(await second.call("whoami"), { user_id: user.toLowerCase() });
    assert.deepEqual(await socket.logout(), { authenticated: false });
    assert.deepEqual(await socket.closed, { code: 1008, reason: "session ended" });
    await second.close();
  });
}
