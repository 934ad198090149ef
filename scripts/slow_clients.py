#!/usr/bin/env python3
"""Slow and hostile clients against the example server (issue: reliability).

Starts the release example server on its embedded demo configuration, then:

1. holds IDLE idle connections (connected, nothing sent) and TRICKLE clients
   that send a token request's body one byte a second, while one normal
   client asks for tokens back to back; reports the normal client's
   latencies (pass: p99 under 50 ms) and how the server dealt with the slow
   ones (closed after [server] header_read_timeout_secs / the endpoint's
   body timeout);
2. measures the server's CPU per request at the sample API by kind of token:
   good and bad-signature tokens, each new or repeated, and malformed ones
   (pass: a new bad signature costs no more than a new good token, one
   signature check each; a malformed token under half of that, since it is
   refused before any signature check).

Loopback only; every loop is bounded. Usage:

    python3 scripts/slow_clients.py [--idle 1000] [--trickle 200] [--seconds 20]

Exit status 0 when both checks pass. Needs only the Python standard library
and cargo (it builds `--release --example server`).
"""

import argparse
import asyncio
import base64
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HOST, build_examples, wait_for  # noqa: E402

PORT = 19300
TOKEN_BODY = (
    "grant_type=client_credentials&client_id=demo-client&username=demo-deployer"
    "&password=demo-app-password-not-a-secret&scope=read"
)


def start_server():
    examples = build_examples(("server", "sqlite"))
    process = subprocess.Popen(
        [os.path.join(examples, "server"), "--listen", f"{HOST}:{PORT}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    wait_for(PORT)
    return process


def cpu_seconds(pid):
    """User + system CPU time of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


async def read_response(reader):
    """Reads one HTTP/1.1 response; returns (status, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    match = re.search(rb"(?i)content-length:\s*(\d+)", head)
    length = int(match.group(1)) if match else 0
    body = await reader.readexactly(length) if length else b""
    return status, body


def token_request():
    return (
        f"POST /application/o/token/ HTTP/1.1\r\nHost: {HOST}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(TOKEN_BODY)}\r\n\r\n{TOKEN_BODY}"
    ).encode()


def api_request(token):
    return (
        f"GET /api/hello HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


async def idle_client(stats, stop):
    try:
        reader, writer = await asyncio.open_connection(HOST, PORT)
    except OSError:
        stats["refused"] += 1
        return
    stats["open"] += 1
    try:
        # Closed by the server (idle deadline) or still open at the end.
        await asyncio.wait_for(reader.read(1), timeout=stop - time.monotonic())
        stats["closed_by_server"] += 1
    except OSError:
        stats["closed_by_server"] += 1
    except asyncio.TimeoutError:
        stats["still_open_at_end"] += 1
    finally:
        writer.close()


async def trickle_client(stats, stop):
    try:
        reader, writer = await asyncio.open_connection(HOST, PORT)
    except OSError:
        stats["refused"] += 1
        return
    stats["open"] += 1
    head = (
        f"POST /application/o/token/ HTTP/1.1\r\nHost: {HOST}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(TOKEN_BODY)}\r\n\r\n"
    ).encode()
    try:
        writer.write(head)
        await writer.drain()
        for byte in TOKEN_BODY.encode():
            if time.monotonic() >= stop:
                break
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                # The server answers (and closes) once the body is too slow.
                answer = await asyncio.wait_for(reader.read(64), timeout=1.0)
                if answer:
                    stats["answered"] += 1
                    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
                    stats["statuses"][status] = stats["statuses"].get(status, 0) + 1
                    return
                stats["closed_by_server"] += 1
                return
            except asyncio.TimeoutError:
                continue
    except OSError:
        stats["closed_by_server"] += 1
    finally:
        writer.close()


async def normal_client(latencies, stop):
    reader, writer = await asyncio.open_connection(HOST, PORT)
    while time.monotonic() < stop:
        start = time.perf_counter()
        writer.write(token_request())
        await writer.drain()
        status, _ = await read_response(reader)
        latencies.append((time.perf_counter() - start) * 1000)
        if status != 200:
            raise SystemExit(f"normal client got {status}")
        await asyncio.sleep(0.01)
    writer.close()


async def crowd(idle, trickle, seconds):
    stop = time.monotonic() + seconds
    idle_stats = {"open": 0, "refused": 0, "closed_by_server": 0, "still_open_at_end": 0}
    trickle_stats = {"open": 0, "refused": 0, "closed_by_server": 0, "answered": 0, "statuses": {}}
    tasks = [asyncio.create_task(idle_client(idle_stats, stop)) for _ in range(idle)]
    tasks += [asyncio.create_task(trickle_client(trickle_stats, stop)) for _ in range(trickle)]
    await asyncio.sleep(1.0)  # let the crowd connect first
    latencies = []
    await normal_client(latencies, stop)
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies, idle_stats, trickle_stats


def flip_signature(token, index):
    """The token with one bit of its signature flipped: a bad signature."""
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[index % len(raw)] ^= 0x01
    return ".".join([header, payload, base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")])


async def cpu_by_kind(pid, count):
    """Server CPU per request at the sample API, by kind of bearer token."""
    reader, writer = await asyncio.open_connection(HOST, PORT)
    fresh = []
    for _ in range(count):
        writer.write(token_request())
        await writer.drain()
        _, body = await read_response(reader)
        fresh.append(json.loads(body)["access_token"])
    good = fresh[0]
    _, payload, signature = good.split(".")
    kinds = {
        # Each token seen for the first time: one signature check each.
        "good token, each new": (fresh, 200),
        "bad signature, each new": ([flip_signature(t, i) for i, t in enumerate(fresh)], 401),
        # The same token again and again: the verified-token cache answers.
        "good token, repeated": ([good] * count, 200),
        "bad signature, repeated": ([flip_signature(good, 5)] * count, 401),
        "malformed: not a JWT": (["not-a-jwt"] * count, 401),
        "malformed: bad base64 header": (["e30!." + payload + "." + signature] * count, 401),
    }
    results = {}
    for kind, (tokens, expected) in kinds.items():
        before = cpu_seconds(pid)
        for token in tokens:
            writer.write(api_request(token))
            await writer.drain()
            status, _ = await read_response(reader)
            if status != expected:
                raise SystemExit(f"{kind}: got {status}, expected {expected}")
        results[kind] = (cpu_seconds(pid) - before) / len(tokens) * 1e6
    writer.close()
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--trickle", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20, help="of crowd (over 12: deadlines checked)")
    parser.add_argument("--requests", type=int, default=3000, help="per kind, for the CPU figures")
    args = parser.parse_args()
    server = start_server()
    ok = True
    try:
        latencies, idle_stats, trickle_stats = asyncio.run(
            crowd(args.idle, args.trickle, args.seconds)
        )
        latencies.sort()
        p50 = statistics.median(latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        print(f"normal client beside {args.idle} idle and {args.trickle} trickling clients:")
        print(f"  {len(latencies)} token requests, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {latencies[-1]:.1f} ms")
        print(f"  idle: {idle_stats}")
        print(f"  trickling: {trickle_stats}")
        if p99 >= 50:
            print("  FAIL: p99 is not under 50 ms")
            ok = False
        # The demo's idle deadline ([server] header_read_timeout_secs) is 10 s.
        if args.seconds > 12 and idle_stats["still_open_at_end"]:
            print("  FAIL: idle connections outlived the idle deadline")
            ok = False
        if args.seconds > 12 and trickle_stats["statuses"].get(408, 0) != trickle_stats["open"]:
            print("  FAIL: not every trickling body was cut off with 408")
            ok = False
        cpu = asyncio.run(cpu_by_kind(server.pid, args.requests))
        print(f"server CPU per request at the sample API ({args.requests} each):")
        for kind, micros in cpu.items():
            print(f"  {kind}: {micros:.1f} µs")
        if cpu["bad signature, each new"] > cpu["good token, each new"] * 1.2:
            print("  FAIL: a bad signature costs more than a new good token")
            ok = False
        malformed = max(v for k, v in cpu.items() if k.startswith("malformed"))
        if malformed > cpu["good token, each new"] * 0.5:
            print("  FAIL: a malformed token costs as much as a signature check")
            ok = False
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=40)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
