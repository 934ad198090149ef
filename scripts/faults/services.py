#!/usr/bin/env python3
"""Driver of scripts/faults/services.sh (run that): the release example
server with its store in PostgreSQL and its attempt limiter in Redis, under
a steady load of token requests, while

  1. Redis is stalled (SIGSTOP) for a few seconds, then resumed (SIGCONT);
  2. Redis is stopped, then started again on the same port;
  3. PostgreSQL is stopped, then started again.

Pass: every request is answered (none waits longer than the stores'
timeouts allow), only with 200 or 503 `temporarily_unavailable`; requests
succeed again within 5 s of each service's return; and what was written
before the faults (an account with its binding, a revocation) is still there
afterwards. Loopback only; bounded.
"""

import asyncio
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import HOST, build_examples, post_form, wait_for  # noqa: E402


async def request(fields, timeout=30.0):
    """The status of a token request; "hang" or "error" when it has none."""
    try:
        return (await post_form(PORT, "/application/o/token/", fields, timeout=timeout))[0]
    except asyncio.TimeoutError:
        return "hang"
    except (OSError, IndexError, ValueError):
        return "error"

PORT = 19320
APP_SECRET = "fault-application-secret-0123456789"
CLIENTS = 8
# The longest a request may take with a store gone: Redis operations time
# out after 2 s (twice per request: begin and end of the attempt), a
# PostgreSQL connection after 3 s; anything longer is a hang.
HANG = 8.0
RECOVERY = 5.0


class Load:
    def __init__(self):
        self.samples = []  # (start, latency, status)
        self.running = True

    async def client(self, fields):
        while self.running:
            start = time.monotonic()
            status = await request(fields)
            self.samples.append((start, time.monotonic() - start, status))
            await asyncio.sleep(0.005)

    def window(self, begin, end):
        return [s for s in self.samples if begin <= s[0] < end]


def redis_pid():
    with open(os.path.join(os.environ["FAULT_REDIS_DIR"], "redis.pid")) as pid:
        return int(pid.read().strip())


def start_redis_again():
    directory, port = os.environ["FAULT_REDIS_DIR"], os.environ["FAULT_REDIS_PORT"]
    subprocess.run(
        ["redis-server", "--bind", HOST, "--port", port, "--save", "", "--appendonly", "no",
         "--maxmemory-policy", "noeviction", "--dir", directory, "--daemonize", "yes",
         "--pidfile", os.path.join(directory, "redis.pid"),
         "--logfile", os.path.join(directory, "redis.log")],
        check=True,
    )


def stop_redis():
    pid = redis_pid()
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
            time.sleep(0.05)
        except ProcessLookupError:
            return


def pg_ctl(action):
    command = shlex.split(os.environ["TOWER_M2M_AUTH_PG_CTL"]) + action.split()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def admin(binary, config, *args):
    done = subprocess.run([binary, "--config", config, *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"admin {args}: {done.stderr}")
    return done.stdout.strip()


async def run(binary, config):
    # Written before any fault: an account with its binding, and a revoked token.
    token = admin(binary, config, "create-service-account", "svc-before")
    admin(binary, config, "bind", "svc-before", "fault-client", "--scope", "read")
    server = subprocess.Popen(
        [binary, "--config", config, "--listen", f"{HOST}:{PORT}"],
        stdout=subprocess.DEVNULL,
        stderr=open(config + ".log", "w"),
        env={**os.environ, "RUST_LOG": "warn"},
    )
    try:
        await asyncio.get_running_loop().run_in_executor(None, wait_for, PORT)
        basic = f"fault-client:{APP_SECRET}"
        _, issued = await post_form(PORT, 
            "/application/o/token/",
            {"grant_type": "client_credentials", "client_id": "fault-client",
             "client_secret": APP_SECRET},
        )
        revoked = issued["access_token"]
        status, _ = await post_form(PORT, "/application/o/revoke/", {"token": revoked}, basic)
        assert status == 200

        load = Load()
        fields = {"grant_type": "client_credentials", "client_id": "fault-client",
                  "username": "svc-before", "password": token, "scope": "read"}
        clients = [asyncio.create_task(load.client(fields)) for _ in range(CLIENTS)]
        phases = []  # (name, fault start, service back)

        async def phase(name, fault, recover, outage=4.0):
            await asyncio.sleep(2.0)
            down = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, fault)
            await asyncio.sleep(outage)
            await asyncio.get_running_loop().run_in_executor(None, recover)
            back = time.monotonic()
            phases.append((name, down, back))
            await asyncio.sleep(RECOVERY + 1.0)

        started = time.monotonic()
        await phase("Redis stalled (SIGSTOP)", lambda: os.kill(redis_pid(), signal.SIGSTOP),
                    lambda: os.kill(redis_pid(), signal.SIGCONT))
        await phase("Redis stopped", stop_redis, start_redis_again)
        await phase("PostgreSQL stopped", lambda: pg_ctl("stop -m fast"), lambda: pg_ctl("start"))
        load.running = False
        await asyncio.gather(*clients)

        ok = True
        # (Answered before the first fault: a request sent just before it
        # may be answered 503 during it.)
        baseline = [s for s in load.window(started, phases[0][1]) if s[0] + s[1] < phases[0][1]]
        print(f"baseline: {len(baseline)} requests, statuses {statuses(baseline)}")
        ends = [p[1] for p in phases[1:]] + [float("inf")]
        for (name, down, back), end in zip(phases, ends):
            during = load.window(down, back)
            after = load.window(back, end)
            first_ok = next((s[0] + s[1] for s in after if s[2] == 200), None)
            recovered = None if first_ok is None else first_ok - back
            settled = [s for s in after if s[0] >= back + RECOVERY]  # until the next fault
            worst = max((s[1] for s in load.samples if down - HANG <= s[0] < back + RECOVERY), default=0)
            print(
                f"{name}: during {len(during)} requests {statuses(during)}, longest answer "
                f"{worst:.2f} s; first 200 {recovered:.2f} s after its return; "
                f"from {RECOVERY:.0f} s on: {statuses(settled)}"
                if recovered is not None
                else f"{name}: never recovered; during {statuses(during)}"
            )
            if recovered is None or recovered > RECOVERY:
                ok = False
            if any(s[2] != 200 for s in settled):
                ok = False
            if worst > HANG:
                ok = False
        unexpected = [s for s in load.samples if s[2] not in (200, 503)]
        if unexpected:
            print(f"unexpected answers: {statuses(unexpected)}")
            ok = False

        # Nothing written before the faults is lost.
        status, _ = await post_form(PORT, "/application/o/token/", fields)
        status_revoked, body = await post_form(PORT, 
            "/application/o/introspect/", {"token": revoked}, basic
        )
        kept = status == 200 and status_revoked == 200 and body.get("active") is False
        print(f"written before the faults: account logs in and revocation holds: {kept}")
        return ok and kept
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=40)


def statuses(samples):
    counts = {}
    for _, _, status in samples:
        counts[status] = counts.get(status, 0) + 1
    return counts


def main():
    for name in ("TOWER_M2M_AUTH_PG_URL", "TOWER_M2M_AUTH_PG_CTL", "TOWER_M2M_AUTH_REDIS_URL",
                 "FAULT_REDIS_DIR", "FAULT_REDIS_PORT"):
        if name not in os.environ:
            sys.exit(f"{name} is unset: run scripts/faults/services.sh")
    binary = os.path.join(build_examples(("server", "postgres,redis")), "server")
    with tempfile.TemporaryDirectory(prefix="m2m-fault-") as directory:
        config = os.path.join(directory, "server.toml")
        with open(config, "w") as file:
            file.write(f"""
issuer = "http://{HOST}:{PORT}"

[store]
postgres = "{os.environ['TOWER_M2M_AUTH_PG_URL']}"

[attempt_limits]
redis = "{os.environ['TOWER_M2M_AUTH_REDIS_URL']}"

[[applications]]
client_id = "fault-client"
slug = "fault"
client_secret = "{APP_SECRET}"
scopes = ["read"]
""")
        ok = asyncio.run(run(binary, config))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
