#!/usr/bin/env python3
"""Driver of scripts/faults/pg_listeners.sh (run that): is an admin change
on PostgreSQL refused everywhere once the command returns, when a server's
change listener is slow, frozen or gone?

Two release example servers share one PostgreSQL database, each with its
read cache warm and eight clients logging in back to back (the static
login, answered from the cache). A third process runs the admin commands
`disable` and `enable` on the account, one after the other; the moment each
returns, one login on each live server must give the new answer (400 while
disabled, 200 while enabled). Three phases:

  1. all listeners well;
  2. server B's listener backend frozen (SIGSTOP, as in a network
     partition): the command waits for that listener's lease, and B,
     no longer hearing anything, stops serving from its cache;
  3. server B killed (SIGKILL): its listener's backend goes away, and the
     command does not wait for it.

Pass: no stale answer right after any command, and every command returns
within the lease (5 s) plus 2 s. Loopback only; bounded (about a minute).
"""

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "load"))
from common import HOST, build_examples, post_form, stop, wait_for  # noqa: E402
from stores import psql, psql_rows  # noqa: E402

PORTS = (19370, 19371)
DATABASE = "m2m_faults"
LISTENER = "tower-m2m-auth change listener"
PASSWORD = "pg-listeners-fault-password-0123456789"
LOGIN = {"grant_type": "client_credentials", "client_id": "demo-client",
         "username": "svc-fault", "password": PASSWORD}
CLIENTS = 8
LIMIT = 7.0  # the listeners' lease (5 s) and 2 s to spare

CONFIG = """
issuer = "http://{host}:{port}"

[store]
postgres = "{url}"

[attempt_limits]
enabled = false

[[applications]]
client_id = "demo-client"
slug = "demo"
scopes = ["read"]

[[service_accounts]]
username = "svc-fault"
tokens = [{{ token = "{password}" }}]
bindings = [{{ client_id = "demo-client", scopes = ["read"] }}]
"""


def listener_backends(url, server):
    """The PostgreSQL backends of `server`'s change listener: its process's
    connections (`ss`) matched to `pg_stat_activity` by client port."""
    out = subprocess.run(["ss", "-tnpH", "state", "established"], check=True,
                         capture_output=True, text=True).stdout
    ports = {line.split()[2].rsplit(":", 1)[1] for line in out.splitlines()
             if f"pid={server.pid}," in line}
    rows = psql_rows(url, "SELECT pid, client_port FROM pg_stat_activity "
                      f"WHERE datname = current_database() AND application_name = '{LISTENER}'")
    return [int(pid) for pid, port in rows if port in ports]


class Load:
    """Clients logging in back to back on each port, while `running`."""

    def __init__(self):
        self.running = True
        self.answers = 0

    async def client(self, port):
        while self.running:
            try:
                await post_form(port, "/application/o/token/", LOGIN, timeout=10)
                self.answers += 1
            except (OSError, asyncio.TimeoutError, IndexError, ValueError):
                await asyncio.sleep(0.05)


async def toggle(binary, config, ports, enable):
    """Runs `enable` or `disable`; its duration, and the login statuses on
    each of `ports` right after it returned."""
    command = "enable" if enable else "disable"
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        binary, command, "svc-fault", "--config", config,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    if await process.wait() != 0:
        raise SystemExit(f"{command} failed")
    took = time.monotonic() - started
    statuses = [(await post_form(port, "/application/o/token/", LOGIN))[0] for port in ports]
    return took, statuses


async def phase(name, binary, config, ports, commands, results):
    durations, stale = [], 0
    for i in range(commands):
        enable = i % 2 == 1
        took, statuses = await toggle(binary, config, ports, enable)
        durations.append(took)
        want = 200 if enable else 400
        stale += sum(status != want for status in statuses)
    results.append((name, commands, len(ports), statistics.median(durations), max(durations),
                    stale))
    print(f"{name:44} {commands:3} commands, median {statistics.median(durations):.3f} s, "
          f"max {max(durations):.3f} s, stale answers {stale}", flush=True)


async def run(binary, config, url, servers):
    load = Load()
    clients = [asyncio.create_task(load.client(port)) for port in PORTS for _ in range(CLIENTS)]
    results = []
    try:
        await asyncio.sleep(1)
        await phase("1. all listeners well", binary, config, PORTS, 20, results)
        frozen = listener_backends(url, servers[1])
        if len(frozen) != 1:
            raise SystemExit(f"expected one listener backend of server B, found {frozen}")
        os.kill(frozen[0], signal.SIGSTOP)
        try:
            await phase("2. B's listener frozen (SIGSTOP)", binary, config, PORTS, 6, results)
        finally:
            os.kill(frozen[0], signal.SIGCONT)
        servers[1].kill()
        servers[1].wait()
        await phase("3. B killed (SIGKILL)", binary, config, PORTS[:1], 6, results)
    finally:
        load.running = False
        await asyncio.gather(*clients, return_exceptions=True)
    print(f"{load.answers} logins of the background load answered")
    return results


def main():
    pg_url = os.environ.get("TOWER_M2M_AUTH_PG_URL")
    if not pg_url:
        raise SystemExit("TOWER_M2M_AUTH_PG_URL is not set: run scripts/faults/pg_listeners.sh")
    binary = os.environ.get("SERVER") or os.path.join(build_examples(("server", "postgres")),
                                                      "server")
    psql(pg_url, f"DROP DATABASE IF EXISTS {DATABASE}", f"CREATE DATABASE {DATABASE}")
    url = urllib.parse.urlsplit(pg_url)._replace(path=f"/{DATABASE}").geturl()
    with tempfile.TemporaryDirectory(prefix="m2m-pg-listeners-") as directory:
        configs = []
        for port in PORTS:
            configs.append(os.path.join(directory, f"server-{port}.toml"))
            with open(configs[-1], "w") as file:
                file.write(CONFIG.format(host=HOST, port=port, url=url, password=PASSWORD))
        servers = []
        try:
            for port, config in zip(PORTS, configs):
                servers.append(subprocess.Popen(
                    [binary, "--config", config, "--listen", f"{HOST}:{port}"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env={**os.environ, "RUST_LOG": "error"}))
                wait_for(port)
            results = asyncio.run(run(binary, configs[0], url, servers))
        finally:
            stop([server for server in servers if server.poll() is None])
    passed = all(stale == 0 and longest <= LIMIT for *_, longest, stale in results)
    print("PASS" if passed else "FAIL")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
