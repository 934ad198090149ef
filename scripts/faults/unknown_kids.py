#!/usr/bin/env python3
"""Fault: a flood of tokens naming unknown `kid`s at a downstream API.

Runs the release example server (the issuer) and the downstream example,
which verifies tokens against the issuer's JWKS URL. First a quiet phase of
good tokens only (8 connections), then the same good-token load beside a
flood (4 connections) of tokens whose headers name random unknown `kid`s
(100,000 distinct ones, cycled). Reports the good tokens'
p99 in both phases and counts the JWKS fetches the downstream made (its
`JWKS fetched` debug events).

Pass: at most one fetch per cooldown (30 s by default) during the flood,
and the good tokens' p99 under the flood within 1.5x of the quiet figure.

    python3 scripts/faults/unknown_kids.py [--seconds 20]

Loopback only, bounded. Needs wrk (installed if missing) and cargo.
"""

import argparse
import base64
import http.client
import json
import math
import os
import re
import secrets
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import HOST, build_examples, ensure_wrk, stop, wait_for  # noqa: E402
from common import ROOT  # noqa: E402

PORT, DOWNSTREAM_PORT = 19340, 19341
COOLDOWN = 30
BODY = ("grant_type=client_credentials&client_id=demo-client&username=demo-deployer"
        "&password=demo-app-password-not-a-secret&scope=read")


def tokens(count):
    connection = http.client.HTTPConnection(HOST, PORT)
    result = []
    for _ in range(count):
        connection.request("POST", "/application/o/token/", BODY,
                           {"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        result.append(json.loads(response.read())["access_token"])
    return result


def with_unknown_kid(token):
    _, payload, signature = token.split(".")
    header = {"alg": "ES256", "typ": "at+jwt", "kid": secrets.token_hex(8)}
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
    return f"{encoded}.{payload}.{signature}"


def wrk(tokens_file, seconds, connections):
    return subprocess.Popen(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s",
         os.path.join(ROOT, "examples", "load", "downstream.lua"),
         f"http://{HOST}:{DOWNSTREAM_PORT}/api/hello"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TOKENS": tokens_file})


def figures(output):
    def millis(text):
        value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    requests = int(re.search(r"(\d+) requests in", output).group(1))
    return requests, millis(re.search(r"99%\s+(\S+)", output).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    ensure_wrk()
    examples = build_examples(("server", "sqlite"), ("downstream", "axum"))
    processes = []
    try:
        with tempfile.TemporaryDirectory(prefix="m2m-kids-") as directory:
            server = subprocess.Popen(
                [os.path.join(examples, "server"), "--listen", f"{HOST}:{PORT}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env={**os.environ, "RUST_LOG": "error"})
            processes.append(server)
            wait_for(PORT)
            log = os.path.join(directory, "downstream.log")
            downstream = subprocess.Popen(
                [os.path.join(examples, "downstream"), "--listen", f"{HOST}:{DOWNSTREAM_PORT}",
                 "--issuer", f"http://{HOST}:{PORT}/application/o/demo/"],
                stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                env={**os.environ, "RUST_LOG": "error,tower_m2m_auth::keys=debug",
                     "NO_COLOR": "1"})
            processes.append(downstream)
            wait_for(DOWNSTREAM_PORT)
            good = tokens(1000)
            good_file = os.path.join(directory, "good.txt")
            with open(good_file, "w") as file:
                file.write("\n".join(good) + "\n")
            bogus_file = os.path.join(directory, "bogus.txt")
            with open(bogus_file, "w") as file:
                for i in range(100_000):
                    file.write(with_unknown_kid(good[i % len(good)]) + "\n")
            # Warm the downstream's cache of the issuer's keys.
            warm = wrk(good_file, 2, 4)
            warm.communicate()

            quiet = wrk(good_file, args.seconds, 8)
            quiet_requests, quiet_p99 = figures(quiet.communicate()[0])
            fetched_before = open(log).read().count("JWKS fetched")
            steady = wrk(good_file, args.seconds, 8)
            # The flood's answers are 401s: downstream.lua exits non-zero on them.
            flood = wrk(bogus_file, args.seconds, 4)
            steady_requests, flood_p99 = figures(steady.communicate()[0])
            flood_out = flood.communicate()[0]
            flood_requests = int(re.search(r"(\d+) requests in", flood_out).group(1))
            fetches = open(log).read().count("JWKS fetched") - fetched_before
            allowed = 1 + math.ceil(args.seconds / COOLDOWN)
            print(f"quiet: {quiet_requests} good-token requests, p99 {quiet_p99:.2f} ms")
            print(f"flood: {flood_requests} unknown-kid requests beside {steady_requests} "
                  f"good-token requests, good p99 {flood_p99:.2f} ms; JWKS fetches: {fetches} "
                  f"(at most {allowed})")
            ok = fetches <= allowed and flood_p99 <= quiet_p99 * 1.5
            print("PASS" if ok else "FAIL")
            return 0 if ok else 1
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
