// Runs worker.js locally in Miniflare (Cloudflare's workerd runtime, with its local
// implementation of the Cache API) in front of a media-proxy you run yourself:
//
//   npm ci && node local.mjs http://127.0.0.1:3003 [PORT]
//
// then browse http://127.0.0.1:8787/... The tests (tests/api/deploy.rs) drive the Worker
// this way. Prints the address it listens on, then serves until stopped.
import { Miniflare } from "miniflare";
import { fileURLToPath } from "node:url";

const [origin, port = "8787"] = process.argv.slice(2);
if (!origin) {
  console.error("usage: node local.mjs ORIGIN_URL [PORT]");
  process.exit(2);
}
const here = fileURLToPath(new URL(".", import.meta.url));
const mf = new Miniflare({
  modules: true,
  modulesRoot: here,
  scriptPath: fileURLToPath(new URL("./worker.js", import.meta.url)),
  compatibilityDate: "2024-09-23",
  bindings: { ORIGIN: origin },
  host: "127.0.0.1",
  port: Number(port),
});
const url = await mf.ready;
console.log(`listening on ${url}`);
const stop = async () => {
  await mf.dispose();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
