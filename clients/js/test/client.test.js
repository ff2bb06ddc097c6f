// toto-client against real Toto servers of tests/apps/typed, started by tests/explorer/test_js_client.py:
// TOTO_URL_USER_ID, TOTO_URL_SESSION_KEY and TOTO_URL_OFF name one server per hmac_mode.
import assert from "node:assert/strict";
import { mkdtemp, writeFile, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pathToFileURL } from "node:url";

import { TotoClient, TotoError, localStorageStore, memoryStore } from "../src/toto-client.js";
import { generate } from "../bin/toto-client-generate.js";

const SERVERS = {
  user_id: process.env.TOTO_URL_USER_ID,
  session_key: process.env.TOTO_URL_SESSION_KEY,
  off: process.env.TOTO_URL_OFF,
};
let users = 0;
const newUser = (mode) => `JS-${mode}-${process.pid}-${++users}`;

async function rejects(promise, code) {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof TotoError, String(error));
    assert.equal(error.code, code, String(error.value));
    return true;
  });
}

for (const [mode, url] of Object.entries(SERVERS)) {
  test(`${mode}: create, login, signed calls, batch, logout`, { skip: !url }, async () => {
    const client = new TotoClient(url, { hmacMode: mode });
    const user = newUser(mode);
    const created = await client.create(user, "pw");
    assert.equal(created.user_id, user.toLowerCase());
    assert.equal(mode === "session_key", typeof created.key === "string");
    const first = client.session.session_id;
    const login = await client.login(user, "pw");
    assert.notEqual(login.session_id, first, "a login opens a new session");
    assert.equal(client.session.session_id, login.session_id);

    assert.deepEqual(await client.call("notes.add", { title: "from node", tags: ["js"] }), { count: 1 });
    assert.deepEqual(await client.call("notes.list"), [{ title: "from node", tags: ["js"], priority: "low" }]);
    const sent = client.lastExchange.request.headers;
    assert.equal(sent["x-toto-session-id"], login.session_id);
    assert.equal("x-toto-hmac" in sent, mode !== "off");
    assert.equal("x-toto-timestamp" in sent, mode === "session_key");
    assert.equal("x-toto-nonce" in sent, mode === "session_key");
    assert.equal("x-toto-hmac" in client.lastExchange.response.headers, mode !== "off");

    await rejects(client.call("add", { a: 1, b: "2" }), 1003);
    assert.equal(client.lastExchange.response.status, 200);
    const answers = await client.batch({
      sum: { method: "add", parameters: { a: 20, b: 22 } },
      bad: { method: "add", parameters: { a: 1 } },
      mine: { method: "notes.list" },
    });
    assert.deepEqual(answers.sum, { result: 42 });
    assert.equal(answers.bad.error.code, 1003);
    assert.equal(answers.mine.result.length, 1);

    assert.deepEqual(await client.logout(), { authenticated: false });
    assert.equal(client.session, null);
    await rejects(client.call("notes.list"), 1004);
  });

  test(`${mode}: identical calls at once are all answered (a fresh nonce each)`, { skip: !url }, async () => {
    const client = new TotoClient(url, { hmacMode: mode });
    await client.create(newUser(mode), "pw");
    const answers = await Promise.all(Array.from({ length: 50 }, () => client.call("add", { a: 1, b: 2 })));
    assert.deepEqual(answers, Array(50).fill(3));
  });

  test(`${mode}: a bad login is 1005 and keeps no session`, { skip: !url }, async () => {
    const client = new TotoClient(url, { hmacMode: mode });
    const user = newUser(mode);
    await client.create(user, "right");
    const other = new TotoClient(url, { hmacMode: mode });
    await rejects(other.login(user, "wrong"), 1005);
    assert.equal(other.session, null);
  });
}

for (const mode of ["user_id", "session_key"]) {
  test(`${mode}: an answer whose signature does not verify is refused with 1009`, { skip: !SERVERS[mode] }, async () => {
    let tamper = false;
    // A fetch that changes one byte of the answer, as a broken proxy would.
    const tampering = async (input, init) => {
      const response = await fetch(input, init);
      if (!tamper) return response;
      const text = (await response.text()).replace('"count":', '"count" :');
      return new Response(text, { status: response.status, headers: response.headers });
    };
    const client = new TotoClient(SERVERS[mode], { hmacMode: mode, fetch: tampering });
    await client.create(newUser(mode), "pw");
    tamper = true;
    await rejects(client.call("notes.add", { title: "x" }), 1009);
    tamper = false;
    assert.deepEqual(await client.call("notes.add", { title: "y" }), { count: 2 }, "the call itself ran");
  });

  test(`${mode}: a request with a wrong signature is refused by the server (1008)`, { skip: !SERVERS[mode] }, async () => {
    const store = memoryStore();
    const client = new TotoClient(SERVERS[mode], { hmacMode: mode, store });
    await client.create(newUser(mode), "pw");
    const session = store.load();
    store.save({ ...session, user_id: "someone-else", key: session.key && "A".repeat(43) });
    await rejects(client.call("notes.list"), 1008);
  });
}

test("the session persists in a localStorage-like store across clients", { skip: !SERVERS.session_key }, async () => {
  const storage = new Map();
  const local = { getItem: (k) => storage.get(k) ?? null, setItem: (k, v) => storage.set(k, v), removeItem: (k) => storage.delete(k) };
  const first = new TotoClient(SERVERS.session_key, { hmacMode: "session_key", store: localStorageStore("t", local) });
  const user = newUser("persist");
  await first.create(user, "pw");
  await first.call("notes.add", { title: "kept" });
  assert.ok(JSON.parse(storage.get("t")).key, "the key is stored with the session");
  const second = new TotoClient(SERVERS.session_key, { hmacMode: "session_key", store: localStorageStore("t", local) });
  assert.equal((await second.call("notes.list"))[0].title, "kept");
  await second.logout();
  assert.equal(storage.has("t"), false);
});

test("a call answered 1013 (it did not run) is sent again, signed anew", { skip: !SERVERS.session_key }, async () => {
  let refusals = 0;
  const sent = [];
  // The first two tries meet a server that is busy, as a full password hasher answers.
  const busy = async (input, init) => {
    sent.push(init.headers["x-toto-hmac"]);
    if (refusals >= 2) return fetch(input, init);
    refusals += 1;
    const body = JSON.stringify({ error: { code: 1013, value: "busy; retry" } });
    return new Response(body, { status: 503, headers: { "content-type": "application/json", "retry-after": "0" } });
  };
  const client = new TotoClient(SERVERS.session_key, { hmacMode: "session_key", fetch: busy });
  await client.create(newUser("retry"), "pw");
  sent.length = 0;
  refusals = 0;
  assert.deepEqual(await client.call("notes.add", { title: "once" }), { count: 1 }, "it ran once");
  assert.equal(sent.length, 3);
  assert.equal(new Set(sent).size, 3, "every try was signed anew");
  const impatient = new TotoClient(SERVERS.session_key, { hmacMode: "session_key", fetch: busy, retries: 0 });
  refusals = 0;
  await rejects(impatient.call("add", { a: 1, b: 2 }), 1013);
});

test("an expired stored session is dropped before it is sent", () => {
  const store = memoryStore();
  store.save({ session_id: "x", expires: Date.now() / 1000 - 10, user_id: "u" });
  const client = new TotoClient("http://127.0.0.1:9", { store });
  assert.equal(client.session, null);
  assert.equal(store.load(), null);
});

test("the generator writes typed stubs that call the server", { skip: !SERVERS.user_id }, async () => {
  const document = await (await fetch(SERVERS.user_id + "/openapi.json")).json();
  const { js, dts } = generate(document, "test");
  const dir = await mkdtemp(join(tmpdir(), "toto-stubs-"));
  await writeFile(join(dir, "api.js"), js);
  await writeFile(join(dir, "api.d.ts"), dts);
  assert.match(dts, /add: \(\(parameters: Numbers\) => Promise<number>\);/);
  assert.match(dts, /export type Numbers = \{\n  a: number;\n  b: number;\n\};/);
  assert.match(dts, /export type Note = \{\n  title: string;\n  tags\?: string\[\];\n  priority\?: "(low|high)" \| "(low|high)";\n\};/);
  assert.match(dts, /notes: \{\n/);
  assert.match(dts, /step: \(\(parameters: Step\) => Promise<number\[\]>\);/);
  assert.match(dts, /hello: \(\(parameters\?: \{\n    \[key: string\]: unknown;\n  \}\) => Promise<unknown>\);/);
  const { createApi } = await import(pathToFileURL(join(dir, "api.js")).href);
  const client = new TotoClient(SERVERS.user_id);
  const api = createApi(client);
  assert.equal(await api.add({ a: 2, b: 40 }), 42);
  await client.create(newUser("stubs"), "pw");
  assert.deepEqual(await api.notes.add({ title: "typed" }), { count: 1 });
  assert.deepEqual(await api.toto.describe().then((d) => d.hmac_mode), "user_id");
  assert.equal((await readFile(join(dir, "api.js"), "utf8")).includes('client.call("notes.add", parameters)'), true);
});
