"""Open-loop load on the running system: the product page and checkout at fixed rates.

    python3 scripts/platformctl.py up
    uv run python bench/load.py --pages 50,100,300,600 --checkouts 20,50 --seconds 10

Requests start on a fixed schedule (``rate`` per second, spread over
``--workers`` load processes) whether or not earlier ones have finished, as
real users arrive: a slow system is not given a breather by its own
slowness. Latency counts from the scheduled start, so time spent waiting for
a free client slot counts too. For each route and rate it prints the rate
achieved (successful responses per second), p50/p99/max of the successful
responses, every status (``timeout`` and ``error`` for requests that got no
answer), how the responses over ``--slow-ms`` (50) spread over the seconds of
the run (a few bad seconds or a steady tail), and the CPU share of each
process (from /proc; 100% is one core): the services, PostgreSQL with its
backends, Kafka, the trace collector and the load processes themselves, with
the machine's load average. Figures only: nothing passes or fails.

The gateway's read cache serves most product pages (as in production); the
recommendations are fetched over gRPC on every page. Checkouts use fresh
idempotency keys, one unit each of an in-stock product.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("gateway", "catalog", "recommendations", "orders", "fraud")
PLATFORM = ("kafka", "otlp-sink")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- one load process -------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its whole response.

    A small client on asyncio streams instead of a general one: a load
    process must cost far less than the server it measures.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, head: bytes, body: bytes = b"") -> int:
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed by the server")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        close = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            raise ConnectionResetError("the server closes the connection")
        return status


async def drive(args: argparse.Namespace) -> None:
    """Sends ``rate`` requests per second for ``seconds``; prints one JSON result line."""
    products: list[str] = json.loads(args.products)
    interval = args.workers / args.rate
    count = int(args.seconds * args.rate / args.workers)
    url = urlsplit(args.base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    slow_seconds: Counter[int] = Counter()  # slow responses by second of the run
    idle: list[Connection] = []
    slots = asyncio.Semaphore(args.connections)

    def request_bytes(i: int) -> tuple[bytes, bytes]:
        product = products[(i * args.workers + args.index) % len(products)]
        if args.route == "page":
            return f"GET /api/products/{product} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), b""
        body = json.dumps(
            {"customer_id": "bench-load", "items": [{"product_id": product, "quantity": 1}]}
        ).encode()
        head = (
            f"POST /api/checkout HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/json\r\n"
            f"Idempotency-Key: bench-load-{uuid.uuid4()}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        return head, body

    async def one(i: int, scheduled: float) -> None:
        head, body = request_bytes(i)
        async with slots:
            connection = idle.pop() if idle else None
            try:
                async with asyncio.timeout(args.timeout - (time.perf_counter() - scheduled)):
                    if connection is not None:
                        try:
                            status = await connection.request(head, body)
                        except (ConnectionError, asyncio.IncompleteReadError):
                            # The server closed an idle keep-alive connection: a new one.
                            connection.writer.close()
                            connection = None
                    if connection is None:
                        connection = Connection(*await asyncio.open_connection(host, port))
                        status = await connection.request(head, body)
            except TimeoutError:
                statuses["timeout"] += 1
                if connection is not None:
                    connection.writer.close()
                return
            except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
                statuses["error"] += 1
                if connection is not None:
                    connection.writer.close()
                return
            idle.append(connection)
        statuses[str(status)] += 1
        if status < 300:
            latency = (time.perf_counter() - scheduled) * 1000
            latencies.append(latency)
            if latency > args.slow_ms:
                slow_seconds[int(scheduled - start)] += 1

    # Each process starts a fraction of an interval later, so their requests interleave.
    start = time.perf_counter() + 0.2 + interval * args.index / args.workers
    tasks = []
    for i in range(count):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    sent_for = time.perf_counter() - start
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for connection in idle:
        connection.writer.close()
    print(
        json.dumps(
            {
                "latencies": latencies,
                "statuses": statuses,
                "slow_seconds": slow_seconds,
                "sent": count,
                "sent_for": sent_for,
                "elapsed": elapsed,
            }
        ),
        flush=True,
    )


# --- the driver -------------------------------------------------------------------------


def _pid_from(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if Path(f"/proc/{pid}").exists() else None


def service_pids() -> dict[str, list[int]]:
    """The processes whose CPU is shown: the services, then the platform's servers.

    PostgreSQL counts its postmaster and every backend (each connection is a
    process); the load processes of this run are added by the caller.
    """
    pids: dict[str, list[int]] = {}
    for name in (*SERVICES, *PLATFORM):
        pid = _pid_from(ROOT / ".run" / "pids" / f"{name}.pid")
        if pid is not None:
            pids[name] = [pid]
    postmaster = _pid_from(ROOT / ".run" / "postgres" / "postmaster.pid")
    if postmaster is not None:
        pids["postgres"] = [postmaster, *_children(postmaster)]
    return pids


def _children(parent: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return children


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


CpuSnapshot = dict[str, dict[int, float]]


def cpu_snapshot() -> CpuSnapshot:
    """CPU seconds so far of each process of :func:`service_pids`, by name."""
    pids = service_pids()
    return {name: {pid: cpu_seconds(pid) for pid in group} for name, group in pids.items()}


def cpu_used(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds used between two snapshots, by name.

    A process started in between (a new PostgreSQL backend) counts in full;
    one that ended is missed.
    """
    return {
        name: sum(s - before.get(name, {}).get(pid, 0.0) for pid, s in group.items() if s)
        for name, group in after.items()
    }


def _children_cpu() -> float:
    """CPU seconds of this process's waited-for children: the load processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def run_level(args: argparse.Namespace, route: str, rate: float, products: list[str]) -> None:
    before = cpu_snapshot()
    load_cpu_before = _children_cpu()
    load_before = loadavg()
    started = time.monotonic()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--drive",
                route,
                "--rate",
                str(rate),
                "--workers",
                str(args.workers),
                "--index",
                str(index),
                "--seconds",
                str(args.seconds),
                "--base-url",
                args.base_url,
                "--timeout",
                str(args.timeout),
                "--connections",
                str(args.connections),
                "--slow-ms",
                str(args.slow_ms),
                "--products",
                json.dumps(products),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for index in range(args.workers)
    ]
    results = [json.loads(worker.communicate()[0].strip().splitlines()[-1]) for worker in workers]
    wall = time.monotonic() - started
    cpu = {name: used / wall for name, used in cpu_used(before, cpu_snapshot()).items()}
    cpu["load"] = (_children_cpu() - load_cpu_before) / wall
    latencies = [value for result in results for value in result["latencies"]]
    statuses: Counter[str] = Counter()
    slow: Counter[str] = Counter()
    for result in results:
        statuses.update(result["statuses"])
        slow.update(result["slow_seconds"])
    worst = max(slow.values(), default=0)
    sent = sum(result["sent"] for result in results)
    sent_for = max(result["sent_for"] for result in results)
    elapsed = max(result["elapsed"] for result in results)
    good = len(latencies)
    shown = " ".join(f"{status}:{n}" for status, n in sorted(statuses.items()))
    cpu_shown = " ".join(f"{service} {share * 100:.0f}%" for service, share in cpu.items())
    print(
        f"{route:<8}{rate:>7.0f}/s  sent {sent / max(sent_for, 1e-9):6.0f}/s  "
        f"good {good / args.seconds:6.0f}/s  p50 {percentile(latencies, 50):7.1f}  "
        f"p99 {percentile(latencies, 99):7.1f}  max {max(latencies, default=float('nan')):7.1f} ms"
        f"  (drained in {elapsed:4.1f} s)\n"
        f"          statuses {shown}\n"
        f"          over {args.slow_ms:g} ms: {sum(slow.values())} in {len(slow)} of "
        f"{args.seconds:g} s (worst second {worst})\n"
        f"          CPU {cpu_shown}; load average {load_before} -> {loadavg()}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--pages", default="50,100,300", help="product page rates, per second")
    parser.add_argument("--checkouts", default="20,50", help="checkout rates, per second")
    parser.add_argument("--seconds", type=float, default=10, help="per rate")
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    parser.add_argument("--timeout", type=float, default=5, help="client time-out, seconds")
    parser.add_argument("--connections", type=int, default=256, help="at most, per load process")
    parser.add_argument("--pause", type=float, default=3, help="seconds between rates")
    parser.add_argument("--slow-ms", type=float, default=50, help="a slow response, ms")
    parser.add_argument("--drive", choices=["page", "checkout"], help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--products", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drive:
        args.route = args.drive
        asyncio.run(drive(args))
        return 0

    with httpx.Client(base_url=args.base_url, timeout=10) as client:
        listed = client.get("/api/products", params={"page_size": 50})
        listed.raise_for_status()
        products = [
            p["product_id"] for p in listed.json()["products"] if p["stock_available"] > 100
        ]
    if not products:
        print("no product with more than 100 units in stock: reseed the catalog", file=sys.stderr)
        return 1
    print(
        f"open-loop load against {args.base_url}: {args.seconds:g} s per rate, "
        f"{args.workers} load processes, client time-out {args.timeout:g} s; "
        f"latency of successful responses from their scheduled start; load average {loadavg()}"
    )
    levels = [("page", float(r)) for r in args.pages.split(",") if r] + [
        ("checkout", float(r)) for r in args.checkouts.split(",") if r
    ]
    for number, (route, rate) in enumerate(levels):
        if number:
            time.sleep(args.pause)
        run_level(args, route, rate, products)
    return 0


if __name__ == "__main__":
    sys.exit(main())
