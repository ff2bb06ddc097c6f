// Types of toto-client (src/toto-client.js).

export declare const ERROR_NOT_AUTHORIZED: 1004;
export declare const ERROR_INVALID_SESSION_ID: 1007;
export declare const ERROR_INVALID_RESPONSE_HMAC: 1009;
export declare const ERROR_CLIENT: 1000;
export declare const ERROR_SERVICE_UNAVAILABLE: 1013;

export type HmacMode = "user_id" | "session_key" | "off";

/** What the server answers in `session`, plus the signing key in session_key mode. */
export interface Session {
  session_id: string;
  expires: number;
  user_id: string | null;
  key?: string;
}

/** Where a client keeps its session between calls (and page loads). */
export interface SessionStore {
  load(): Session | null;
  save(session: Session): void;
  clear(): void;
}

export interface StorageLike {
  getItem(name: string): string | null;
  setItem(name: string, value: string): void;
  removeItem(name: string): void;
}

export declare function memoryStore(): SessionStore;
export declare function localStorageStore(name?: string, storage?: StorageLike): SessionStore;

export declare class TotoError extends Error {
  constructor(code: number, value: unknown);
  readonly code: number;
  readonly value: unknown;
}

export interface TotoClientOptions {
  hmacMode?: HmacMode;
  store?: SessionStore;
  fetch?: typeof fetch;
  headers?: Record<string, string>;
  /** How many times a call answered 1013 (it did not run) is sent again; default 3. */
  retries?: number;
}

export interface SignInResult {
  session_id: string;
  expires: number;
  user_id: string;
  key?: string;
}

export type BatchAnswer<T = unknown> = { result: T } | { error: { code: number; value: unknown } };

export interface Exchange {
  request: { method: string; url: string; headers: Record<string, string>; body: string };
  response: { status: number; headers: Record<string, string>; body: string };
}

export declare class TotoClient {
  constructor(url: string, options?: TotoClientOptions);
  readonly url: string;
  readonly hmacMode: HmacMode;
  store: SessionStore;
  headers: Record<string, string>;
  retries: number;
  lastExchange: Exchange | null;
  get session(): Session | null;
  call<R = unknown, P = Record<string, unknown>>(method: string, parameters?: P): Promise<R>;
  batch(calls: Record<string, { method: string; parameters?: unknown }>): Promise<Record<string, BatchAnswer>>;
  create(userId: string, password: string, fields?: Record<string, unknown>): Promise<SignInResult>;
  login(userId: string, password: string): Promise<SignInResult>;
  logout(): Promise<{ authenticated: false }>;
  send(path: string, body: unknown, options?: { signIn?: boolean }): Promise<Record<string, any>>;
  connect(options?: { path?: string; WebSocket?: typeof WebSocket }): Promise<TotoSocket>;
}

/** How a socket ended: 1008 the session ended or a bad signature, 1009 too big, 1001 shutdown, 1013 overload. */
export interface CloseInfo {
  code: number;
  reason: string;
}

/** Where an event stands in its bus's stream (README "WebSockets", recovery). */
export interface Position {
  epoch: string;
  seq: number;
}

export declare class TotoSocket {
  readonly client: TotoClient;
  readonly ws: WebSocket;
  readonly closed: Promise<CloseInfo>;
  /** The newest event position seen, or null. */
  readonly position: Position | null;
  /** After a subscription with `since`: whether nothing was missed (false: a gap). */
  readonly recovered: boolean | null;
  call<R = unknown, P = Record<string, unknown>>(method: string, parameters?: P): Promise<R>;
  batch(calls: Record<string, { method: string; parameters?: unknown }>): Promise<Record<string, BatchAnswer>>;
  subscribe<D = unknown>(
    events: string | string[],
    listener: (data: D, event: string) => void,
    options?: { since?: Position | null },
  ): Promise<string[]>;
  unsubscribe(events?: string | string[]): Promise<string[]>;
  create(userId: string, password: string, fields?: Record<string, unknown>): Promise<SignInResult>;
  login(userId: string, password: string): Promise<SignInResult>;
  logout(): Promise<{ authenticated: false }>;
  close(code?: number, reason?: string): Promise<CloseInfo>;
}
