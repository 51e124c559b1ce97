// A Cloudflare Worker in front of media-proxy (an AWS Lambda function URL, or your own server):
// it forwards each request to ORIGIN and keeps the answers in Cloudflare's cache with the
// Cache API, keyed on the full URL and, for the store mode's `format=auto`, the browser's
// Accept reduced to three buckets (AVIF, WebP, neither).
//
// Set the Worker variable ORIGIN to the origin's host name, e.g.
//   abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws
// (HTTPS), or to a full origin URL such as http://media-proxy.internal:3003.
// and give the Worker a custom domain (e.g. mediaproxy.example.com). See docs/cdn.md.
//
// Note: on the Workers Free plan a Worker handles at most 100,000 requests a day, cache hits
// included. Above that, use the paid plan or CloudFront (deploy/aws/template.yaml).

// An image type counts when listed without q=0 (the same reading as media-proxy's).
function listed(accept, type) {
  return accept.split(",").some((item) => {
    const [media, ...params] = item.split(";");
    if (media.trim().toLowerCase() !== type) return false;
    return !params.some((p) => {
      const m = /^q=(.*)$/.exec(p.trim());
      return m !== null && parseFloat(m[1]) <= 0;
    });
  });
}

export function acceptBucket(accept) {
  const avif = listed(accept || "", "image/avif");
  const webp = listed(accept || "", "image/webp");
  if (avif && webp) return "image/avif,image/webp";
  if (avif) return "image/avif";
  if (webp) return "image/webp";
  return "*/*";
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const base = env.ORIGIN.includes("://") ? env.ORIGIN : `https://${env.ORIGIN}`;
    const upstream = new URL(url.pathname + url.search, base);
    const bucket = acceptBucket(request.headers.get("Accept"));
    const headers = new Headers({ Accept: bucket });
    for (const name of ["If-None-Match", "If-Modified-Since", "Range", "User-Agent"]) {
      const value = request.headers.get(name);
      if (value !== null) headers.set(name, value);
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      // OPTIONS (CORS preflight) and anything else: forwarded, never cached.
      return fetch(upstream, { method: request.method, headers });
    }
    // The Cache API keys on the URL alone (it ignores Vary and fragments): put the bucket
    // into the key's query (the key only names the entry; the origin never sees it).
    const keyUrl = new URL(url.pathname + url.search, url.origin);
    keyUrl.searchParams.append("__accept", bucket);
    const key = new Request(keyUrl.toString());
    const cache = caches.default;
    const conditional = headers.has("If-None-Match") || headers.has("If-Modified-Since");
    if (!conditional && !headers.has("Range")) {
      const hit = await cache.match(key);
      if (hit) {
        return request.method === "HEAD" ? new Response(null, hit) : hit;
      }
    }
    let response;
    try {
      response = await fetch(upstream, { method: "GET", headers });
    } catch (e) {
      return new Response("origin unreachable", {
        status: 502,
        headers: { "Cache-Control": "no-store", "Content-Type": "text/plain" },
      });
    }
    // The Cache API follows the answer's Cache-Control (a year for images, minutes for
    // errors, never for `no-store`); partial and not-modified answers are not stored.
    if (response.status !== 206 && response.status !== 304) {
      ctx.waitUntil(cache.put(key, response.clone()));
    }
    return request.method === "HEAD" ? new Response(null, response) : response;
  },
};
