#!/usr/bin/env python3
"""Fault: the example server killed with SIGKILL during SQLite writes.

Runs the release example server on an SQLite store, with an application that
accepts single-use input JWTs. Under load it
  - exchanges input JWTs, each with a new jti (a committed replay-cache write),
  - gets access tokens and revokes some of them (revocation-list writes),
  - creates and binds service accounts with the admin commands, from other
    processes on the same database file,
and is killed with SIGKILL in the middle of it. After a restart on the same
files, everything that was acknowledged before the kill must be there:
  - every jti answered 200 is refused when replayed (its write survived),
  - every token whose revocation was answered 200 introspects inactive,
  - every account whose creation and binding were acknowledged logs in,
and the database passes `PRAGMA integrity_check`.

One command, loopback only, bounded:

    python3 scripts/faults/sqlite_kill.py [--rounds 3] [--seconds 4]

Needs the Python package `cryptography` (to sign ES256 input JWTs; `pip
install cryptography`) and cargo (it builds `--release --example server`).
Exit status 0 when every check passes.
"""

import argparse
import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import HOST, Es256Signer, build_examples, post_form, wait_for  # noqa: E402

PORT = 19310
ISSUER = "https://ci.fault.test"
APP_SECRET = "fault-application-secret-0123456789"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def mint(signer, jti):
    now = int(time.time())
    return signer.mint({"iss": ISSUER, "sub": "job", "exp": now + 600, "iat": now, "jti": jti,
                        "aud": f"http://{HOST}:{PORT}/application/o/token/"})


CONFIG = f"""
issuer = "http://{HOST}:{PORT}"

[store]
sqlite = "auth.db"

[attempt_limits]
enabled = false

[[applications]]
client_id = "fault-client"
slug = "fault"
client_secret = "{APP_SECRET}"
scopes = ["read"]

[[applications]]
client_id = "ci-client"
slug = "ci"
scopes = ["deploy"]
single_use_assertions = true
[[applications.trusted_issuers]]
issuer = "{ISSUER}"
certificates = ["ci.pem"]
"""


class Server:
    def __init__(self, binary, directory):
        self.binary = binary
        self.directory = directory
        self.process = None

    def config(self):
        return os.path.join(self.directory, "server.toml")

    def start(self):
        self.process = subprocess.Popen(
            [self.binary, "--config", self.config(), "--listen", f"{HOST}:{PORT}"],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.directory, "server.log"), "a"),
            env={**os.environ, "RUST_LOG": "warn"},
        )
        wait_for(PORT)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def admin(self, *args):
        """An admin command on the same database, from another process."""
        return subprocess.run(
            [self.binary, "--config", self.config(), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )


async def exchange(jwt):
    return await post_form(PORT, 
        "/application/o/token/",
        {"grant_type": "client_credentials", "client_id": "ci-client",
         "client_assertion_type": JWT_BEARER, "client_assertion": jwt},
    )


async def app_token():
    return await post_form(PORT, 
        "/application/o/token/",
        {"grant_type": "client_credentials", "client_id": "fault-client",
         "client_secret": APP_SECRET},
    )


async def jwt_load(signer, acknowledged, stop):
    while time.monotonic() < stop:
        jti = uuid.uuid4().hex
        jwt = mint(signer, jti)
        try:
            status, _ = await exchange(jwt)
        except (OSError, IndexError, ValueError):
            return  # the server is gone
        if status == 200:
            acknowledged.append(jwt)


async def revoke_load(revoked, stop):
    while time.monotonic() < stop:
        try:
            status, body = await app_token()
            if status != 200:
                continue
            token = body["access_token"]
            status, _ = await post_form(PORT, 
                "/application/o/revoke/", {"token": token}, basic=f"fault-client:{APP_SECRET}"
            )
        except (OSError, IndexError, ValueError):
            return
        if status == 200:
            revoked.append(token)


def admin_load(server, created, stop):
    while time.monotonic() < stop:
        username = "svc-" + uuid.uuid4().hex[:12]
        made = server.admin("create-service-account", username)
        if made.returncode != 0:
            continue
        token = made.stdout.strip()
        bound = server.admin("bind", username, "fault-client", "--scope", "read")
        if bound.returncode == 0:
            created.append((username, token))


async def one_round(server, signer, seconds):
    acknowledged, revoked, created = [], [], []
    stop = time.monotonic() + seconds
    kill_at = time.monotonic() + seconds * random.uniform(0.5, 0.9)

    async def killer():
        await asyncio.sleep(max(0.0, kill_at - time.monotonic()))
        server.kill()

    admin = asyncio.get_running_loop().run_in_executor(None, admin_load, server, created, stop)
    await asyncio.gather(
        *[jwt_load(signer, acknowledged, stop) for _ in range(8)],
        *[revoke_load(revoked, stop) for _ in range(4)],
        killer(),
    )
    await admin
    return acknowledged, revoked, created


async def verify(signer, acknowledged, revoked, created):
    failures = []
    # The restarted server works: a new JWT passes, a new token is active.
    status, _ = await exchange(mint(signer, uuid.uuid4().hex))
    if status != 200:
        failures.append(f"a new single-use JWT is refused after the restart: {status}")
    status, body = await app_token()
    if status == 200:
        status, body = await post_form(PORT, 
            "/application/o/introspect/",
            {"token": body["access_token"]},
            basic=f"fault-client:{APP_SECRET}",
        )
    if status != 200 or body.get("active") is not True:
        failures.append(f"a new token is not active after the restart: {status} {body}")
    for jwt in acknowledged:
        status, body = await exchange(jwt)
        if not (status == 400 and body and body.get("error") == "invalid_grant"):
            failures.append(f"acknowledged jti accepted again after the kill: {status}")
    for token in revoked:
        status, body = await post_form(PORT, 
            "/application/o/introspect/", {"token": token}, basic=f"fault-client:{APP_SECRET}"
        )
        if status != 200 or body.get("active") is not False:
            failures.append(f"revoked token active after the kill: {status} {body}")
    for username, token in created:
        status, _ = await post_form(PORT, 
            "/application/o/token/",
            {"grant_type": "client_credentials", "client_id": "fault-client",
             "username": username, "password": token, "scope": "read"},
        )
        if status != 200:
            failures.append(f"account {username} created before the kill cannot log in: {status}")
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4)
    args = parser.parse_args()
    binary = os.path.join(build_examples(("server", "sqlite")), "server")
    signer = Es256Signer()
    ok = True
    with tempfile.TemporaryDirectory(prefix="m2m-fault-") as directory:
        with open(os.path.join(directory, "server.toml"), "w") as config:
            config.write(CONFIG)
        with open(os.path.join(directory, "ci.pem"), "wb") as pem:
            pem.write(signer.public_pem())
        server = Server(binary, directory)
        totals = [0, 0, 0]
        for round_number in range(1, args.rounds + 1):
            server.start()
            acknowledged, revoked, created = asyncio.run(one_round(server, signer, args.seconds))
            server.start()  # after the SIGKILL, on the same files
            failures = asyncio.run(verify(signer, acknowledged, revoked, created))
            server.kill()
            check = sqlite3.connect(os.path.join(directory, "auth.db"))
            integrity = check.execute("PRAGMA integrity_check").fetchone()[0]
            check.close()
            print(
                f"round {round_number}: killed mid-load; before the kill {len(acknowledged)} "
                f"single-use JWTs, {len(revoked)} revocations and {len(created)} accounts "
                f"were acknowledged; after the restart {len(failures)} of them missing; "
                f"integrity_check: {integrity}"
            )
            for failure in failures[:10]:
                print("  " + failure)
            totals = [a + b for a, b in zip(totals, [len(acknowledged), len(revoked), len(created)])]
            ok = ok and not failures and integrity == "ok"
        print(
            f"total: {totals[0]} jtis, {totals[1]} revocations, {totals[2]} accounts checked after "
            f"{args.rounds} kills"
        )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
