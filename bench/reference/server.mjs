// The reference for bench/run.sh: a Node.js media proxy built on sharp (libvips), doing what
// the Misskey media proxy (misskey-dev/media-proxy) does for the flags measured, with its
// settings: fetch the `url`, then
//   emoji   → height 128, animation kept, never enlarged
//   static  → first frame, fit inside 498×422, never enlarged
//   preview → first frame, fit inside 200×200, never enlarged
//   (none)  → the remote file streamed through unchanged
// encoded as WebP quality 77, alpha quality 95, effort 2, smart subsampling. No cache, no
// coalescing (like ours in the benchmark, which runs with its caches off).
//
//   node server.mjs PORT
import http from "node:http";
import { Readable } from "node:stream";
import sharp from "sharp";

const port = Number(process.argv[2] || 13080);
const webp = { quality: 77, alphaQuality: 95, effort: 2, smartSubsample: true, lossless: false };

async function transform(buffer, flags) {
  if (flags.has("emoji")) {
    return sharp(buffer, { animated: true })
      .resize({ height: 128, withoutEnlargement: true })
      .webp(webp)
      .toBuffer();
  }
  if (flags.has("static")) {
    return sharp(buffer)
      .resize({ width: 498, height: 422, fit: "inside", withoutEnlargement: true })
      .webp(webp)
      .toBuffer();
  }
  return sharp(buffer)
    .resize({ width: 200, height: 200, fit: "inside", withoutEnlargement: true })
    .webp(webp)
    .toBuffer();
}

const server = http.createServer(async (req, res) => {
  try {
    const query = new URL(req.url, "http://localhost").searchParams;
    const target = query.get("url");
    if (!target) {
      res.writeHead(200, { "Content-Type": "text/plain" });
      res.end("Hello World!");
      return;
    }
    const upstream = await fetch(target);
    if (!upstream.ok) {
      res.writeHead(502);
      res.end();
      return;
    }
    const flags = new Set(["emoji", "static", "preview"].filter((f) => query.has(f)));
    if (flags.size === 0) {
      res.writeHead(200, {
        "Content-Type": upstream.headers.get("content-type") || "application/octet-stream",
        "Cache-Control": "max-age=31536000, immutable",
      });
      Readable.fromWeb(upstream.body).pipe(res);
      return;
    }
    const out = await transform(Buffer.from(await upstream.arrayBuffer()), flags);
    res.writeHead(200, {
      "Content-Type": "image/webp",
      "Cache-Control": "max-age=31536000, immutable",
    });
    res.end(out);
  } catch (e) {
    res.writeHead(500);
    res.end(String(e));
  }
});
server.listen(port, "127.0.0.1");
