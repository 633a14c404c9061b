"""Latency of ``minivae explore``'s /api/decode for the digits VAE: one client, then 8 at once.

    python benchmarks/explore_latency.py --json benchmarks/results/explore_latency-DATE.json

Trains the demo's VAE (digits, 2-D latent, hidden 256-128) for a few epochs into a temporary
folder (the latency depends on the architecture, not on how well it is trained), starts
``minivae explore --port 0 --no-browser`` in a subprocess, as a user would, and times
GET /api/decode?z=u,v (a PNG) from this process with fresh connections (what a browser's
image requests cost): first one client making the requests one after another, then 8
client threads at once. Reports p50 and p95 in milliseconds and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def timed_get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        response.read()
        assert response.status == 200
    return time.perf_counter() - started


def _cpu_model() -> str:
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(requests: int = 400, clients: int = 8, epochs: int = 5) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "demo"
        subprocess.run([sys.executable, "-m", "minivae.cli", "demo", "--epochs", str(epochs), "--out", str(run),
                        "--quiet"], check=True, capture_output=True)
        server = subprocess.Popen([sys.executable, "-m", "minivae.cli", "explore", str(run), "--port", "0",
                                   "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            base = "http://" + server.stdout.readline().split("http://", 1)[1].split("/", 1)[0]
            rng = np.random.default_rng(0)
            urls = [f"{base}/api/decode?z={u:.4f},{v:.4f}" for u, v in rng.normal(size=(requests, 2))]
            for url in urls[:20]:  # warm up
                timed_get(url)
            one = np.array([timed_get(url) for url in urls]) * 1000
            with ThreadPoolExecutor(clients) as pool:
                many = np.array(list(pool.map(timed_get, urls))) * 1000
        finally:
            server.send_signal(signal.SIGINT)
            server.communicate(timeout=30)

    def stats(ms: np.ndarray) -> dict:
        return {"requests": int(ms.size), "p50_ms": round(float(np.percentile(ms, 50)), 2),
                "p95_ms": round(float(np.percentile(ms, 95)), 2), "max_ms": round(float(ms.max()), 2)}

    return {
        "what": "GET /api/decode (PNG of E[x|z]) against minivae explore over the demo VAE (digits, 2-D, 256-128)",
        "one_client": stats(one), f"{clients}_clients": stats(many),
        "machine": {"platform": platform.platform(), "cpu_model": _cpu_model(),
                    "cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average_1min_at_end": round(os.getloadavg()[0], 2)},
        "date": time.strftime("%Y-%m-%d"),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--note", default="", help="conditions to record, e.g. 'shared with other jobs'")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()
    result = main(args.requests, args.clients)
    result["note"] = args.note
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
