#!/usr/bin/env python3
"""A soak at saturation: the release example server (SQLite store, attempt
limiter on) under a mix of traffic for MINUTES minutes, with the downstream
example taking 10,000 rotating tokens at the same time.

    python3 scripts/soak/soak.py [--minutes 10]

The mix (scripts/soak/mix.lua, wrk): static logins, input JWTs,
introspection, JWKS and discovery reads, the sample API, and about 20 % bad
requests of many kinds (wrong credentials, forged assertions, malformed and
unsupported requests, missing and forged bearer tokens), each of a kind
whose answers are known. Every minute it reports the requests, the answers
that were not of their kind's (must be 0), p50/p99, and the server's RSS and
open file descriptors. Pass: no unexpected answer; RSS and descriptors of
the last minute within 10 % of the second's; p99 of the last minute within
1.5x the second's (both for the mix and downstream).

Loopback only, bounded. Needs wrk (installed from Debian's packages if
missing), the Python package cryptography, and cargo.
"""

import argparse
import base64
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import HOST, Es256Signer, build_examples, ensure_wrk, stop, wait_for  # noqa: E402
from common import ROOT  # noqa: E402

PORT, DOWNSTREAM_PORT = 19330, 19331
PASSWORD = "soak-app-password-not-a-secret"
SECRET = "soak-application-secret-0123456789"
ISSUER = "https://ci.soak.test"
HERE = os.path.dirname(os.path.abspath(__file__))

CONFIG = f"""
issuer = "http://{HOST}:{PORT}"

[store]
sqlite = "soak.db"

# Every client of the soak has the address 127.0.0.1: limit per client_id.
[attempt_limits]
per_address = 0

[[applications]]
client_id = "demo-client"
slug = "demo"
client_secret = "{SECRET}"
scopes = ["read"]

[[applications]]
client_id = "bad-client"
slug = "bad"
scopes = ["read"]

[[applications]]
client_id = "ci-client"
slug = "ci"
scopes = ["deploy"]
[[applications.trusted_issuers]]
issuer = "{ISSUER}"
certificates = ["ci.pem"]

[[service_accounts]]
username = "demo-deployer"
tokens = [{{ token = "{PASSWORD}" }}]
bindings = [{{ client_id = "demo-client", scopes = ["read"] }}]
"""


def mint_jwts(signer, count):
    now = int(time.time())
    return [signer.mint({"iss": ISSUER, "sub": f"job-{i % 20}", "exp": now + 3300, "iat": now,
                         "aud": f"http://{HOST}:{PORT}/application/o/token/"})
            for i in range(count)]


def access_tokens(count):
    connection = http.client.HTTPConnection(HOST, PORT)
    body = ("grant_type=client_credentials&client_id=demo-client&username=demo-deployer"
            f"&password={PASSWORD}&scope=read")
    tokens = []
    for _ in range(count):
        connection.request("POST", "/application/o/token/", body,
                           {"Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            sys.exit(f"token request failed: {response.status} {payload[:200]!r}")
        tokens.append(json.loads(payload)["access_token"])
    return tokens


def memory_and_descriptors(pid):
    with open(f"/proc/{pid}/status") as status:
        rss = int(re.search(r"VmRSS:\s+(\d+)", status.read()).group(1))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def downstream_figures(output):
    def millis(text):
        value, unit = re.match(r"([\d.]+)(\w+)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]

    requests = int(re.search(r"(\d+) requests in", output).group(1))
    p99 = millis(re.search(r"99%\s+(\S+)", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return requests, p99, int(non_2xx.group(1)) if non_2xx else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=10)
    args = parser.parse_args()
    ensure_wrk()
    examples = build_examples(("server", "sqlite"), ("downstream", "axum"))
    signer = Es256Signer()
    processes = []
    try:
        with tempfile.TemporaryDirectory(prefix="m2m-soak-") as directory:
            with open(os.path.join(directory, "server.toml"), "w") as config:
                config.write(CONFIG)
            with open(os.path.join(directory, "ci.pem"), "wb") as pem:
                pem.write(signer.public_pem())
            quiet = {**os.environ, "RUST_LOG": "error"}
            server = subprocess.Popen(
                [os.path.join(examples, "server"), "--config",
                 os.path.join(directory, "server.toml"), "--listen", f"{HOST}:{PORT}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=quiet)
            processes.append(server)
            wait_for(PORT)
            downstream = subprocess.Popen(
                [os.path.join(examples, "downstream"), "--listen", f"{HOST}:{DOWNSTREAM_PORT}",
                 "--issuer", f"http://{HOST}:{PORT}/application/o/demo/"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=quiet)
            processes.append(downstream)
            wait_for(DOWNSTREAM_PORT)

            tokens = access_tokens(10_000)
            data = os.path.join(directory, "soak.tsv")
            with open(data, "w") as file:
                file.write(f"password\t{PASSWORD}\n")
                basic = base64.b64encode(f"demo-client:{SECRET}".encode()).decode()
                file.write(f"basic\tBasic {basic}\n")
                for jwt in mint_jwts(signer, 200):
                    file.write(f"jwt\t{jwt}\n")
                for token in tokens[:1000]:
                    file.write(f"token\t{token}\n")
            rotating = os.path.join(directory, "tokens.txt")
            with open(rotating, "w") as file:
                file.write("\n".join(tokens) + "\n")

            minutes = []
            print("minute  requests  unexpected  p50 ms  p99 ms  max ms | downstream requests  p99 ms  non-2xx | RSS kB  fds")
            for minute in range(1, args.minutes + 1):
                mix = subprocess.Popen(
                    ["wrk", "-t8", "-c8", "-d60s", "-s", os.path.join(HERE, "mix.lua"),
                     f"http://{HOST}:{PORT}"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    env={**os.environ, "SOAK_DATA": data})
                down = subprocess.Popen(
                    ["wrk", "-t1", "-c16", "-d60s", "--latency", "-s",
                     os.path.join(ROOT, "examples", "load", "downstream.lua"),
                     f"http://{HOST}:{DOWNSTREAM_PORT}/api/hello"],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    env={**os.environ, "TOKENS": rotating})
                mix_out, _ = mix.communicate(timeout=120)
                down_out, _ = down.communicate(timeout=120)
                line = re.search(r"SOAK (\{.*\})", mix_out)
                if not line:
                    sys.exit("wrk (mix) printed no figures:\n" + mix_out)
                figures = json.loads(line.group(1))
                d_requests, d_p99, d_non_2xx = downstream_figures(down_out)
                rss, fds = memory_and_descriptors(server.pid)
                unexpected = sum(v for k, v in figures["unexpected"].items() if not k.startswith("status"))
                minutes.append({**figures, "unexpected_total": unexpected + figures["errors"],
                                "d_requests": d_requests, "d_p99": d_p99, "d_non_2xx": d_non_2xx,
                                "rss": rss, "fds": fds})
                print(f"{minute:6}  {figures['requests']:8}  {unexpected + figures['errors']:10}  "
                      f"{figures['p50_ms']:6.2f}  {figures['p99_ms']:6.2f}  {figures['max_ms']:6.1f} | "
                      f"{d_requests:19}  {d_p99:6.2f}  {d_non_2xx:7} | {rss:6}  {fds:3}", flush=True)
                if unexpected:
                    print(f"        unexpected: {figures['unexpected']}")

            ok = all(m["unexpected_total"] == 0 and m["d_non_2xx"] == 0 for m in minutes)
            if len(minutes) >= 3:
                second, last = minutes[1], minutes[-1]
                flat = lambda key: last[key] <= second[key] * 1.10 + (1 if key == "fds" else 0)
                checks = {
                    "RSS flat": flat("rss"),
                    "descriptors flat": flat("fds"),
                    "mix p99 stable": last["p99_ms"] <= second["p99_ms"] * 1.5,
                    "downstream p99 stable": last["d_p99"] <= second["d_p99"] * 1.5,
                }
                for name, passed in checks.items():
                    print(f"{name}: {'yes' if passed else 'NO'}")
                ok = ok and all(checks.values())
            print("PASS" if ok else "FAIL")
            return 0 if ok else 1
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
