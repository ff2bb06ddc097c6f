// The API explorer: lists the server's methods (toto.describe), and calls them with toto-client,
// signed as the server's hmac_mode asks, showing each answer, the session and the headers.
import { TotoClient, TotoError, localStorageStore } from "./toto-client.js";

const prefix = document.querySelector('meta[name="toto-prefix"]').content;
const base = location.origin + prefix;
const $ = (id) => document.getElementById(id);
const show = (value) => JSON.stringify(value, null, 2);

let client = null;
let description = null;
let selected = null;
const batch = [];

function resolve(schema) {
  const ref = schema && schema.$ref;
  return ref ? description.schemas[ref.split("/").pop()] ?? {} : schema;
}

// A starting point for the parameters box: each declared field with an empty value of its type.
function skeleton(schema, depth = 0) {
  schema = resolve(schema) || {};
  if (depth > 4) return null;
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (schema.enum) return schema.enum[0];
  if (schema.anyOf) return skeleton(schema.anyOf.find((s) => s.type !== "null") ?? {}, depth + 1);
  switch (type) {
    case "string": return "";
    case "integer": case "number": return 0;
    case "boolean": return false;
    case "array": return [];
    case "object": default: {
      const out = {};
      for (const [name, property] of Object.entries(schema.properties || {})) out[name] = skeleton(property, depth + 1);
      return out;
    }
  }
}

function showSession() {
  const session = client.session;
  $("session").textContent = session ? show(session) : "no session";
}

function showExchange() {
  const exchange = client.lastExchange;
  if (!exchange) return;
  $("status").textContent = `HTTP ${exchange.response.status}`;
  let answer = exchange.response.body;
  try { answer = show(JSON.parse(answer)); } catch { /* shown as sent */ }
  $("answer").textContent = answer;
  $("request-headers").textContent = show(exchange.request.headers);
  $("response-headers").textContent = show(exchange.response.headers);
}

// Each action starts from a clean slate: an answer left on screen by an earlier call (its
// "HTTP 200" above all) would read as the answer of one that never went out (invalid JSON).
async function run(action) {
  $("error-message").textContent = "";
  for (const id of ["status", "answer", "request-headers", "response-headers"]) $(id).textContent = "";
  const before = client && client.lastExchange;
  try {
    await action();
  } catch (error) {
    $("error-message").textContent = error instanceof TotoError ? `error ${error.code}: ${JSON.stringify(error.value)}` : String(error);
  }
  if (client && client.lastExchange !== before) showExchange();
  showSession();
}

function parameters() {
  const text = $("parameters").value.trim() || "{}";
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`the parameters are not JSON: ${error.message}`);
  }
}

function select(method, button) {
  selected = method;
  document.querySelectorAll("#methods button").forEach((b) => b.classList.toggle("selected", b === button));
  $("method-name").textContent = method.name;
  const flags = [method.style, method.authenticated ? "authenticated" : "no session needed"];
  if (method.optional_session) flags.push("optional session");
  if (method.requires.length) flags.push("requires " + method.requires.join(", "));
  $("method-flags").replaceChildren(...flags.map((f) => Object.assign(document.createElement("span"), { className: "flag", textContent: f })));
  $("method-doc").textContent = method.doc || "(no docstring)";
  $("parameters-schema").textContent = method.parameters ? show(resolve(method.parameters)) : "not declared";
  $("result-schema").textContent = method.result ? show(resolve(method.result)) : "not declared";
  const start = method.parameters ? skeleton(method.parameters) : Object.fromEntries(method.requires.map((n) => [n, ""]));
  $("parameters").value = show(start);
  $("call").disabled = $("add-to-batch").disabled = false;
}

function listMethods() {
  const items = description.methods.map((method) => {
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.method = method.name;
    button.append(method.name, Object.assign(document.createElement("small"), { textContent: method.doc.split("\n")[0] }));
    button.addEventListener("click", () => select(method, button));
    const item = document.createElement("li");
    item.append(button);
    return item;
  });
  $("methods").replaceChildren(...items);
}

function showBatch() {
  $("batch-list").replaceChildren(
    ...batch.map(([id, call]) => Object.assign(document.createElement("li"), { textContent: `${id}: ${call.method} ${JSON.stringify(call.parameters)}` })),
  );
  $("send-batch").disabled = batch.length === 0;
}

async function start() {
  // The description is public (no session), so it is fetched unsigned.
  const response = await fetch(base + "/toto/describe", { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
  const answer = await response.json();
  if (answer.error) throw new TotoError(answer.error.code, answer.error.value);
  description = answer.result;
  client = new TotoClient(base, { hmacMode: description.hmac_mode, store: localStorageStore(`toto.explorer${prefix}`) });
  $("server-info").textContent = `${base} · hmac_mode ${description.hmac_mode} · ${description.methods.length} methods`;
  listMethods();
  showSession();

  $("create").addEventListener("click", () => run(() => client.create($("user-id").value, $("password").value)));
  $("login").addEventListener("click", () => run(() => client.login($("user-id").value, $("password").value)));
  $("logout").addEventListener("click", () => run(() => client.logout()));
  $("call").addEventListener("click", () => run(() => client.call(selected.name, parameters())));
  $("add-to-batch").addEventListener("click", () => run(async () => {
    batch.push([`call${batch.length + 1}`, { method: selected.name, parameters: parameters() }]);
    showBatch();
  }));
  $("send-batch").addEventListener("click", () => run(() => client.batch(Object.fromEntries(batch))));
  $("clear-batch").addEventListener("click", () => { batch.length = 0; showBatch(); });
  // For the browser's console (and tests): the client, with its session and last exchange.
  window.explorer = { client, description };
  document.body.dataset.ready = "true";
}

start().catch((error) => {
  $("server-info").textContent = `cannot describe ${base}: ${error.message}`;
  document.body.dataset.ready = "failed";
});
