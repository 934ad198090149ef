#!/usr/bin/env python3
"""Fault: SIGTERM under load.

Runs the release example server with 32 clients asking for tokens back to
back (keep-alive connections), sends it SIGTERM, and checks that the
requests in flight complete: no response is cut off midway, every request
the server answered got a whole response, and the server exits with status
0 within its grace period. Requests that never reached the server (sent on
a connection it was closing, or after it stopped accepting) see the
connection closed without a byte of answer: they are counted, not failed;
HTTP clients retry those.

    python3 scripts/faults/sigterm.py [--rounds 3]

Loopback only, bounded. Needs cargo.
"""

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import HOST, build_examples, wait_for  # noqa: E402

PORT = 19350
BODY = ("grant_type=client_credentials&client_id=demo-client&username=demo-deployer"
        "&password=demo-app-password-not-a-secret&scope=read")
REQUEST = (f"POST /application/o/token/ HTTP/1.1\r\nHost: {HOST}\r\n"
           "Content-Type: application/x-www-form-urlencoded\r\n"
           f"Content-Length: {len(BODY)}\r\n\r\n{BODY}").encode()


async def client(stats, stop):
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(HOST, PORT)
        except OSError:
            stats["refused"] += 1
            await asyncio.sleep(0.01)
            continue
        try:
            while not stop.is_set():
                writer.write(REQUEST)
                await writer.drain()
                received = b""
                try:
                    received = await reader.readuntil(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length:\s*(\d+)", received).group(1))
                    body = await reader.readexactly(length)
                    status = int(received.split(b" ", 2)[1])
                    stats["complete"] += 1
                    stats["ok" if status == 200 else "other"] += 1
                    if b"access_token" not in body and status == 200:
                        stats["cut"] += 1
                except (asyncio.IncompleteReadError, ConnectionError) as error:
                    partial = received + getattr(error, "partial", b"")
                    if partial:
                        stats["cut"] += 1
                    else:
                        stats["closed_before_answer"] += 1
                    break
        except ConnectionError:
            stats["closed_before_answer"] += 1
        finally:
            writer.close()


async def one_round(binary):
    server = subprocess.Popen([binary, "--listen", f"{HOST}:{PORT}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "RUST_LOG": "error"})
    await asyncio.get_running_loop().run_in_executor(None, wait_for, PORT)
    stats = {"complete": 0, "ok": 0, "other": 0, "cut": 0, "closed_before_answer": 0,
             "refused": 0}
    stop = asyncio.Event()
    clients = [asyncio.create_task(client(stats, stop)) for _ in range(32)]
    await asyncio.sleep(2.0)
    answered_before = stats["complete"]
    server.send_signal(signal.SIGTERM)
    started = time.monotonic()
    code = await asyncio.get_running_loop().run_in_executor(None, server.wait, 40)
    took = time.monotonic() - started
    stop.set()
    await asyncio.gather(*clients, return_exceptions=True)
    return stats, answered_before, code, took


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    binary = os.path.join(build_examples(("server", None)), "server")
    ok = True
    for round_number in range(1, args.rounds + 1):
        stats, before, code, took = asyncio.run(one_round(binary))
        print(f"round {round_number}: {stats['complete']} whole answers ({stats['ok']} tokens, "
              f"{before} before SIGTERM), {stats['cut']} cut off, "
              f"{stats['closed_before_answer']} connections closed before an answer; "
              f"exit status {code} after {took:.2f} s")
        ok = ok and stats["cut"] == 0 and stats["other"] == 0 and code == 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
