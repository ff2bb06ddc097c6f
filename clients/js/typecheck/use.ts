// Type-checked by tests/explorer/test_js_client.py against src/toto-client.d.ts and stubs (api.js, api.d.ts) it generates here from tests/apps/typed.
import { TotoClient, TotoError, localStorageStore, memoryStore } from "toto-client";
import { createApi, Note } from "./api.js";

const client = new TotoClient("http://127.0.0.1:1", { hmacMode: "session_key", store: memoryStore() });
const api = createApi(client);
async function main(): Promise<number> {
  const n: number = await api.add({ a: 1, b: 2 });
  const saved = await api.notes.add({ title: "x", priority: "high" });
  const count: number = saved.count;
  const steps: number[] = await api.step({ start: 1 });
  const note: Note = { title: "t" };
  const r = await client.batch({ a: { method: "add", parameters: { a: 1, b: 2 } } });
  try { await client.call<string>("hello"); } catch (e) { if (e instanceof TotoError) return e.code; }
  return n + count + steps.length + note.title.length + Object.keys(r).length;
}
main();
localStorageStore("x", { getItem: () => null, setItem: () => {}, removeItem: () => {} });
async function sockets(): Promise<number> {
  const socket = await client.connect();
  const echoed = await socket.call<{ n: number }>("echo", { n: 1 });
  const names: string[] = await socket.subscribe<{ text: string }>("room", (data, event) => data.text + event);
  const closed = await socket.close();
  return echoed.n + names.length + closed.code;
}
sockets();
