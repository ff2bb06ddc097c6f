// toto-client: a Toto client for browsers and Node (18+), as one ES module with no dependencies.
// It speaks PROTOCOL.md: fetch for transport, WebCrypto for the x-toto-hmac signatures
// (user_id and session_key modes), and it refuses answers whose signature does not verify (1009).

/** Error codes a client acts on (PROTOCOL.md section 7). */
export const ERROR_NOT_AUTHORIZED = 1004;
export const ERROR_INVALID_SESSION_ID = 1007;
export const ERROR_INVALID_RESPONSE_HMAC = 1009;
export const ERROR_CLIENT = 1000;
export const ERROR_SERVICE_UNAVAILABLE = 1013;
/** The longest wait, in seconds, between two tries of a call, whatever Retry-After says. */
const MAX_RETRY_DELAY = 30;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A Toto error answer (or 1009 when an answer's signature does not verify). */
export class TotoError extends Error {
  constructor(code, value) {
    super(typeof value === "string" ? `${value} (code ${code})` : `Toto error ${code}`);
    this.name = "TotoError";
    this.code = code;
    this.value = value;
  }
}

/** Keeps the session in this object only: gone when the page or process ends. */
export function memoryStore() {
  let session = null;
  return {
    load: () => session,
    save: (value) => { session = value; },
    clear: () => { session = null; },
  };
}

/** Keeps the session in localStorage (or any object with getItem/setItem/removeItem) under `name`.
 * In session_key mode that includes the session's signing key: use it only where the page's
 * storage is as trusted as the page. */
export function localStorageStore(name = "toto.session", storage = globalThis.localStorage) {
  if (!storage) throw new Error("localStorageStore: no localStorage here; pass a storage object");
  return {
    load() {
      const text = storage.getItem(name);
      if (!text) return null;
      try { return JSON.parse(text); } catch { return null; }
    },
    save: (value) => storage.setItem(name, JSON.stringify(value)),
    clear: () => storage.removeItem(name),
  };
}

function base64(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text);
}

function base64urlDecode(text) {
  const standard = text.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(standard + "=".repeat((4 - (standard.length % 4)) % 4));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

async function hmac(hash, keyBytes, message) {
  const key = await crypto.subtle.importKey("raw", keyBytes, { name: "HMAC", hash }, false, ["sign"]);
  return base64(await crypto.subtle.sign("HMAC", key, message));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}

// A fresh nonce per request and socket call (16 random bytes as base64url): two identical calls
// in the same second are two requests, which the server's replay guard (1015) tells apart.
function newNonce() {
  return base64(crypto.getRandomValues(new Uint8Array(16))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

// Signatures are compared in full, never stopping at the first different character.
function sameText(a, b) {
  if (typeof a !== "string" || typeof b !== "string" || a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/** The signing of one hmac_mode: headers for a request, and the check of an answer. */
const SIGNERS = {
  user_id: {
    async requestHeaders(session, _verb, _target, body) {
      return { "x-toto-hmac": await hmac("SHA-1", encoder.encode(session.user_id ?? ""), body) };
    },
    async verify(session, headers, body) {
      const expected = await hmac("SHA-1", encoder.encode(session.user_id ?? ""), body);
      return sameText(headers.get("x-toto-hmac"), expected);
    },
  },
  session_key: {
    async requestHeaders(session, verb, target, body) {
      const timestamp = String(Math.floor(Date.now() / 1000));
      const nonce = newNonce();
      const message = concat(encoder.encode(`${verb}\n${target}\n${timestamp}\n${nonce}\n`), body);
      const signature = await hmac("SHA-256", base64urlDecode(session.key), message);
      return { "x-toto-timestamp": timestamp, "x-toto-nonce": nonce, "x-toto-hmac": signature };
    },
    async verify(session, headers, body) {
      const timestamp = headers.get("x-toto-timestamp");
      if (!timestamp || !session.key) return false;
      const message = concat(encoder.encode(`${timestamp}\n`), body);
      return sameText(headers.get("x-toto-hmac"), await hmac("SHA-256", base64urlDecode(session.key), message));
    },
  },
  off: {
    async requestHeaders() { return {}; },
    async verify() { return true; },
  },
};

/** A client of one Toto server. */
export class TotoClient {
  /**
   * @param {string} url the server with its root, e.g. "https://api.example.com/api"
   * @param {object} [options] hmacMode ("user_id" | "session_key" | "off", as the server's hmac_mode),
   *   store (memoryStore() or localStorageStore()), fetch (a fetch function), headers (sent on every call),
   *   retries (how many times a call answered 1013, which did not run, is sent again; default 3)
   */
  constructor(url, { hmacMode = "user_id", store = memoryStore(), fetch = globalThis.fetch, headers = {}, retries = 3 } = {}) {
    if (!(hmacMode in SIGNERS)) throw new Error(`hmacMode must be one of ${Object.keys(SIGNERS).join(", ")}`);
    this.url = url.replace(/\/+$/, "");
    this.hmacMode = hmacMode;
    this.store = store;
    this.headers = headers;
    this.retries = retries;
    this._fetch = fetch;
    /** The last request and answer as sent and received (the API explorer shows them). */
    this.lastExchange = null;
  }

  /** The stored session ({session_id, expires, user_id, key?}), or null when none is stored or it expired. */
  get session() {
    const session = this.store.load();
    if (session && typeof session.expires === "number" && session.expires * 1000 < Date.now()) {
      this.store.clear();
      return null;
    }
    return session ?? null;
  }

  /** Call `method` ("a.b.c") with `parameters`; resolves to its result, rejects with a TotoError. */
  async call(method, parameters = {}) {
    const answer = await this.send("/" + method.split(".").join("/"), { parameters });
    if (answer.error) throw new TotoError(answer.error.code, answer.error.value);
    return answer.result;
  }

  /** Several calls in one request: `calls` is {id: {method, parameters}}; resolves to {id: {result} | {error}}. */
  async batch(calls) {
    const answer = await this.send("/", { batch: calls });
    if (answer.error) throw new TotoError(answer.error.code, answer.error.value);
    return answer.batch;
  }

  /** account.create: makes the account, signs in and stores the new session. */
  async create(userId, password, fields = {}) {
    return this._signIn("account.create", { ...fields, user_id: userId, password });
  }

  /** account.login: a new session for `userId`, stored. */
  async login(userId, password) {
    return this._signIn("account.login", { user_id: userId, password });
  }

  /** account.logout: ends the session on the server and forgets it here. */
  async logout() {
    try {
      return await this.call("account.logout");
    } finally {
      this.store.clear();
    }
  }

  /**
   * A WebSocket to the server's socket endpoint (`use_web_sockets`, PROTOCOL.md section 9) that
   * carries this client's session and signs every call in its hmacMode. Resolves once open.
   * `WebSocket` is the constructor to use (default: the global one of browsers and Node 22+).
   */
  async connect({ path = "websocket", WebSocket: Socket = globalThis.WebSocket } = {}) {
    if (typeof Socket !== "function") throw new Error("connect: no WebSocket here; pass { WebSocket }");
    const url = new URL(this.url + "/" + path.replace(/^\/+/, ""), globalThis.location?.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new Socket(url.href);
    await new Promise((resolve, reject) => {
      ws.addEventListener("open", resolve, { once: true });
      ws.addEventListener("error", () => reject(new TotoError(ERROR_CLIENT, `cannot open ${url.href}`)), { once: true });
    });
    return new TotoSocket(this, ws);
  }

  async _signIn(method, parameters) {
    const answer = await this.send("/" + method.split(".").join("/"), { parameters }, { signIn: true });
    if (answer.error) throw new TotoError(answer.error.code, answer.error.value);
    return answer.result;
  }

  /**
   * POST `body` to `path` below the server's URL, signed when a session is stored; the answer's
   * signature is checked and its session stored. Resolves to the whole answer object.
   * A 1013 answer (HTTP 503: the server is busy or its storage is down; the call did not run)
   * is sent again, signed anew, up to `retries` times, after Retry-After or a backoff of 1, 2, 4...
   * seconds (never within the second of the try before: its signature would be a replay).
   */
  async send(path, body, options = {}) {
    for (let attempt = 0; ; attempt++) {
      const { answer, status, retryAfter } = await this._sendOnce(path, body, options);
      if (attempt >= this.retries || status !== 503 || answer.error?.code !== ERROR_SERVICE_UNAVAILABLE) return answer;
      const delay = Math.min(MAX_RETRY_DELAY, Math.max(Number(retryAfter) || 0, 2 ** attempt));
      await new Promise((resolve) => setTimeout(resolve, delay * (1 + Math.random() / 2) * 1000));
    }
  }

  async _sendOnce(path, body, { signIn = false } = {}) {
    const signer = SIGNERS[this.hmacMode];
    const session = signIn ? null : this.session;
    const text = JSON.stringify(body);
    const bytes = encoder.encode(text);
    const url = this.url + path;
    const headers = { "content-type": "application/json", ...this.headers };
    if (session) {
      const sent = new URL(url, globalThis.location?.href); // the request target exactly as fetch sends it
      const target = sent.pathname + sent.search;
      headers["x-toto-session-id"] = session.session_id;
      Object.assign(headers, await signer.requestHeaders(session, "POST", target, bytes));
    }
    const fetchFunction = this._fetch; // called unbound: a browser's fetch refuses any `this` but window
    const response = await fetchFunction(url, { method: "POST", headers, body: bytes });
    const raw = new Uint8Array(await response.arrayBuffer());
    const answerText = decoder.decode(raw);
    this.lastExchange = {
      request: { method: "POST", url, headers, body: text },
      response: { status: response.status, headers: Object.fromEntries(response.headers.entries()), body: answerText },
    };
    let answer;
    try {
      answer = JSON.parse(answerText);
    } catch {
      throw new TotoError(ERROR_CLIENT, `the server answered HTTP ${response.status} with something that is not JSON`);
    }
    if (answer.session) {
      // The session the answer names decides the key: after create/login it is the new one.
      let signedBy = { ...(session ?? {}), ...answer.session };
      if (signIn && answer.result && answer.result.key) signedBy.key = answer.result.key;
      if (session && session.session_id !== answer.session.session_id && !signIn) signedBy = { ...answer.session };
      if (!(await signer.verify(signedBy, response.headers, raw))) {
        throw new TotoError(ERROR_INVALID_RESPONSE_HMAC, "Invalid response HMAC");
      }
      this.store.save(signedBy);
    }
    const code = answer.error?.code;
    if (code === ERROR_NOT_AUTHORIZED || code === ERROR_INVALID_SESSION_ID) this.store.clear();
    return { answer, status: response.status, retryAfter: response.headers.get("retry-after") };
  }
}

/** Signs one socket call (README "WebSockets"): the JSON text, with `,"hmac":"..."}` as its end. */
async function signedFrame(mode, session, message) {
  if (!session || mode === "off" || (mode === "session_key" && !session.key)) return JSON.stringify(message);
  let signature;
  if (mode === "session_key") {
    message = { ...message, timestamp: Math.floor(Date.now() / 1000), nonce: newNonce() };
    const text = JSON.stringify(message);
    signature = await hmac("SHA-256", base64urlDecode(session.key), encoder.encode(`${message.timestamp}\n${text}`));
    return text.slice(0, -1) + `,"hmac":"${signature}"}`;
  }
  const text = JSON.stringify(message);
  signature = await hmac("SHA-1", encoder.encode(session.user_id ?? ""), encoder.encode(text));
  return text.slice(0, -1) + `,"hmac":"${signature}"}`;
}

/** An open socket of a TotoClient: concurrent calls matched by id, batches, event pushes. */
export class TotoSocket {
  constructor(client, ws) {
    this.client = client;
    this.ws = ws;
    this._lastId = 0;
    this._pending = new Map();
    this._listeners = new Map();
    /** The newest event position seen ({epoch, seq}, from pushes and subscription answers), or null. */
    this.position = null;
    /** After a subscription with `since`: whether nothing was missed (false: a gap). */
    this.recovered = null;
    /** Resolves to {code, reason} once the socket is closed (1008: the session ended). */
    this.closed = new Promise((resolve) => {
      ws.addEventListener("close", (event) => {
        for (const waiting of this._pending.values()) {
          waiting.reject(new TotoError(event.code, event.reason || "the socket closed"));
        }
        this._pending.clear();
        resolve({ code: event.code, reason: event.reason });
      });
    });
    ws.addEventListener("message", (event) => this._receive(event.data));
    const session = client.session;
    // Browsers cannot set headers on a WebSocket: the session is named by the first message.
    if (session) ws.send(JSON.stringify({ session_id: session.session_id }));
  }

  /** Call `method`; resolves to its result, rejects with a TotoError. Calls may answer out of order. */
  async call(method, parameters = {}) {
    const answer = await this._send({ method, parameters });
    if (answer.error) throw new TotoError(answer.error.code, answer.error.value);
    this._follow(method, answer.result);
    return answer.result;
  }

  /** Several calls in one message: resolves to {id: {result} | {error}}. */
  async batch(calls) {
    const answer = await this._send({ batch: calls });
    if (answer.error) throw new TotoError(answer.error.code, answer.error.value);
    for (const [id, entry] of Object.entries(answer.batch)) this._follow(calls[id]?.method, entry.result);
    return answer.batch;
  }

  /**
   * Receive pushes of `events` (names): `listener(data, name)` for each. Resolves to every name subscribed.
   * `options.since` (a socket's `position` before it was lost) first pushes what came after it from the
   * event bus's history; `recovered` then tells whether that was everything (false: a gap).
   */
  async subscribe(events, listener, options = {}) {
    const names = typeof events === "string" ? [events] : events;
    for (const name of names) this._listeners.set(name, listener);
    const parameters = { events: names, recover: true };
    if (options.since) parameters.since = { epoch: options.since.epoch, seq: options.since.seq };
    const answer = await this.call("toto.subscribe", parameters);
    this._advance(answer.position);
    if (options.since) this.recovered = answer.recovered === true;
    return answer.subscribed;
  }

  /** Stop the pushes of `events` (none given: of all). */
  async unsubscribe(events) {
    const names = typeof events === "string" ? [events] : events;
    for (const name of names ?? [...this._listeners.keys()]) this._listeners.delete(name);
    return (await this.call("toto.unsubscribe", names ? { events: names } : {})).subscribed;
  }

  create(userId, password, fields = {}) {
    return this.call("account.create", { ...fields, user_id: userId, password });
  }

  login(userId, password) {
    return this.call("account.login", { user_id: userId, password });
  }

  /** Ends the session; the server then closes the socket (1008). */
  async logout() {
    try {
      return await this.call("account.logout");
    } finally {
      this.client.store.clear();
    }
  }

  close(code = 1000, reason = "") {
    this.ws.close(code, reason);
    return this.closed;
  }

  async _send(message) {
    const id = ++this._lastId;
    const frame = await signedFrame(this.client.hmacMode, this.client.session, { id, ...message });
    return new Promise((resolve, reject) => {
      this._pending.set(id, { resolve, reject });
      this.ws.send(frame);
    });
  }

  _receive(data) {
    let message;
    try {
      message = JSON.parse(typeof data === "string" ? data : decoder.decode(data));
    } catch {
      return;
    }
    if (message && "event" in message && !("id" in message)) {
      this._advance(message.position);
      const listener = this._listeners.get(message.event);
      if (listener) listener(message.data, message.event);
      return;
    }
    const waiting = this._pending.get(message?.id);
    if (waiting) {
      this._pending.delete(message.id);
      waiting.resolve(message);
    }
  }

  // Remember a position when it is newer than the one remembered (another epoch counts as newer).
  _advance(position) {
    if (!position || typeof position.epoch !== "string" || !Number.isInteger(position.seq)) return;
    const last = this.position;
    if (!last || last.epoch !== position.epoch || position.seq > last.seq) {
      this.position = { epoch: position.epoch, seq: position.seq };
    }
  }

  // After account.login or account.create on the socket, it (and the client) run with the new session.
  _follow(method, result) {
    if ((method === "account.login" || method === "account.create") && result && result.session_id) {
      this.client.store.save({ ...result });
    }
  }
}
