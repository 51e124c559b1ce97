"""Latency of `emoji` answers while the S3 variant cache is healthy, hung or refusing.

Run by bench/faults-figures.sh (which builds the release binary and names it in argv[1]).
Starts moto (the S3 server the tests use), a TCP proxy in front of it that passes traffic
or stalls (accepts and never answers), a one-file origin on 127.0.0.2, and the binary with
`cache.kind = "s3"` through the proxy and no memory tier. For each state, N sequential
requests for N distinct URLs (uncached: each a miss) and N for one URL (cached: hits when
the bucket answers), p50 and p99 of the time to the last byte. Prints a Markdown table.
"""

import asyncio
import http.server
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

BIN = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 100
PNG = open(sys.argv[3], "rb").read()


def free_port(host="127.0.0.1"):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait(url, seconds=30):
    end = time.time() + seconds
    while time.time() < end:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer")


class Origin(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "image/png")
        self.send_header("content-length", str(len(PNG)))
        self.end_headers()
        self.wfile.write(PNG)

    def log_message(self, *_):
        pass


mode = {"fault": "pass"}


async def handle(client_r, client_w, target):
    if mode["fault"] == "stall":
        while await client_r.read(4096):
            pass
        return
    up_r, up_w = await asyncio.open_connection(*target)

    async def pipe(r, w):
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except Exception:
            pass
        finally:
            w.close()

    await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))


def fault_proxy(port, target):
    loop = asyncio.new_event_loop()

    async def main():
        server = await asyncio.start_server(
            lambda r, w: handle(r, w, target), "127.0.0.1", port
        )
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True).start()


def main():
    moto_port, proxy_port, origin_port, port = (free_port() for _ in range(4))
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs = [moto]
    try:
        wait(f"http://127.0.0.1:{moto_port}/")
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{moto_port}/cache", method="PUT")
        ).read()
        fault_proxy(proxy_port, ("127.0.0.1", moto_port))
        origin = http.server.ThreadingHTTPServer(("127.0.0.2", origin_port), Origin)
        threading.Thread(target=origin.serve_forever, daemon=True).start()
        refusing = free_port()
        rows = []
        for state, endpoint in [
            ("healthy", f"http://127.0.0.1:{proxy_port}"),
            ("hung (accepts, never answers)", f"http://127.0.0.1:{proxy_port}"),
            ("refusing", f"http://127.0.0.1:{refusing}"),
        ]:
            mode["fault"] = "stall" if state.startswith("hung") else "pass"
            env = {
                "PATH": os.environ.get("PATH", ""),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "MEDIA_PROXY__LISTEN": f"127.0.0.1:{port}",
                "MEDIA_PROXY__STORE__KIND": "none",
                "MEDIA_PROXY__ALLOWED_PRIVATE_NETWORKS": "127.0.0.2/32",
                "MEDIA_PROXY__LOG__FILTER": "error",
                "MEDIA_PROXY__CACHE__KIND": "s3",
                "MEDIA_PROXY__CACHE__BUCKET": "cache",
                "MEDIA_PROXY__CACHE__PREFIX": state.split()[0],
                "MEDIA_PROXY__CACHE__ENDPOINT": endpoint,
                "MEDIA_PROXY__CACHE__ALLOW_HTTP": "true",
                "MEDIA_PROXY__CACHE__REGION": "us-east-1",
                "MEDIA_PROXY__CACHE__MEMORY": "0",
            }
            server = subprocess.Popen([BIN, "serve"], env=env)
            procs.append(server)
            wait(f"http://127.0.0.1:{port}/healthz")

            def get(url):
                q = urllib.parse.quote(url, safe="")
                started = time.perf_counter()
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/e.webp?url={q}&emoji=1", timeout=60
                ) as r:
                    r.read()
                    assert r.status == 200
                return (time.perf_counter() - started) * 1000

            base = f"http://127.0.0.2:{origin_port}/emoji.png"
            uncached = [get(f"{base}?n={i}") for i in range(N)]
            get(f"{base}?hot")
            time.sleep(0.5)  # the background write of the hot entry
            cached = [get(f"{base}?hot") for _ in range(N)]

            def pct(xs, p):
                xs = sorted(xs)
                return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]

            rows.append(
                f"| {state} | {pct(uncached, 50):.1f} | {pct(uncached, 99):.1f} "
                f"| {pct(cached, 50):.1f} | {pct(cached, 99):.1f} |"
            )
            server.terminate()
            server.wait()
            procs.remove(server)
        print(f"{N} sequential requests each; ms to the last byte\n")
        print("| S3 variant cache | uncached p50 | uncached p99 | cached p50 | cached p99 |")
        print("|---|---|---|---|---|")
        print("\n".join(rows))
    finally:
        for p in procs:
            p.terminate()


main()
