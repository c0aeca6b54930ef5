#!/usr/bin/env python3
"""1,000 concurrent large /ticks queries against `streamforge run` on SQLite.

Usage: scripts/bench-sqlite-readers.py BINARY [CONCURRENCY]

Starts BINARY (`streamforge run`, SQLite store, one symbol fed at 20,000
ticks/s) on a free port in a temp dir, waits for 20,000 stored ticks, then
measures for 10 s the writer alone, and then while CONCURRENCY clients
(default 1,000) each fetch /api/v1/ticks/AAPL?limit=10000 at once: the
server's peak RSS (from /proc) and the rows it stored per second
(streamforge_store_rows_written_total). Prints one line of results.
"""
import concurrent.futures
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=120):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception as e:  # refused, reset, timed out
        return type(e).__name__, b""


def written(base):
    _, body = get(base + "/metrics", timeout=10)
    m = re.search(rb"^streamforge_store_rows_written_total (\S+)", body, re.M)
    return float(m.group(1)) if m else 0.0


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def main():
    binary = sys.argv[1]
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            [binary, "run", "--data-dir", d, "--http-addr", f"127.0.0.1:{port}",
             "--symbols", "AAPL", "--rate", "20000", "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                if written(base) >= 20_000:
                    break
                time.sleep(0.5)
            else:
                sys.exit("no 20,000 ticks stored in 120 s")
            w0, t0 = written(base), time.time()
            time.sleep(10)
            alone = (written(base) - w0) / (time.time() - t0)
            rss_before = rss(proc.pid)
            peak = [rss_before]
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    peak[0] = max(peak[0], rss(proc.pid))
                    time.sleep(0.1)

            sampler = threading.Thread(target=sample)
            sampler.start()
            url = base + "/api/v1/ticks/AAPL?limit=10000&from=0"
            w1, t1 = written(base), time.time()
            with concurrent.futures.ThreadPoolExecutor(clients) as pool:
                results = list(pool.map(lambda _: get(url), range(clients)))
            took = time.time() - t1
            during = (written(base) - w1) / took
            stop.set()
            sampler.join()
            statuses = {}
            for status, _ in results:
                statuses[status] = statuses.get(status, 0) + 1
            answered = sum(len(b) for s, b in results if s == 200)
            print(f"{os.path.basename(binary)}: {clients} clients in {took:.1f} s, statuses {statuses}, "
                  f"{answered / 1e6:.0f} MB answered; RSS {rss_before / 1e6:.0f} MB before, "
                  f"peak {peak[0] / 1e6:.0f} MB; writer {alone:.0f} rows/s alone, {during:.0f} rows/s during "
                  f"({during / alone:.2f}x)")
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
