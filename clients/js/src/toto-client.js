// toto-client: a Toto client for browsers and Node (18+), as one ES module with no dependencies.
// It speaks PROTOCOL.md: fetch for transport, WebCrypto for the x-toto-hmac signatures
// (user_id and session_key modes), and it refuses answers whose signature does not verify (1009).

/** Error codes a client acts on (PROTOCOL.md section 7). */
export const ERROR_NOT_AUTHORIZED = 1004;
export const ERROR_INVALID_SESSION_ID = 1007;
export const ERROR_INVALID_RESPONSE_HMAC = 1009;
export const ERROR_CLIENT = 1000;

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
      const message = concat(encoder.encode(`${verb}\n${target}\n${timestamp}\n`), body);
      return { "x-toto-timestamp": timestamp, "x-toto-hmac": await hmac("SHA-256", base64urlDecode(session.key), message) };
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
   *   store (memoryStore() or localStorageStore()), fetch (a fetch function), headers (sent on every call)
   */
  constructor(url, { hmacMode = "user_id", store = memoryStore(), fetch = globalThis.fetch, headers = {} } = {}) {
    if (!(hmacMode in SIGNERS)) throw new Error(`hmacMode must be one of ${Object.keys(SIGNERS).join(", ")}`);
    this.url = url.replace(/\/+$/, "");
    this.hmacMode = hmacMode;
    this.store = store;
    this.headers = headers;
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

  async _signIn(method, parameters) {
    const answer = await this.send("/" + method.split(".").join("/"), { parameters }, { signIn: true });
    if (answer.error) throw new TotoError(answer.error.code, answer.error.value);
    return answer.result;
  }

  /**
   * POST `body` to `path` below the server's URL, signed when a session is stored; the answer's
   * signature is checked and its session stored. Resolves to the whole answer object.
   */
  async send(path, body, { signIn = false } = {}) {
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
    return answer;
  }
}
