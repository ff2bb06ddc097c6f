// Must NOT type-check: a string where the generated stub declares a number (tests/explorer/test_js_client.py).
import { TotoClient } from "toto-client";
import { createApi } from "./api.js";
const api = createApi(new TotoClient("x"));
api.add({ a: "1", b: 2 });
