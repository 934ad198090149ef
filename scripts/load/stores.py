#!/usr/bin/env python3
"""The token endpoint's throughput with each store: the release example
server, the same configuration except `[store]` (memory, SQLite, and
PostgreSQL when TOWER_M2M_AUTH_PG_URL is set), under wrk on loopback, for
three kinds of request:

  static      username + app password (the store's read path), id_token on
  jwt         a new ES256 input JWT each time, single_use_assertions = false
  jwt-once    the same with single_use_assertions = true (a committed jti
              write each: the store's write path)

    python3 scripts/load/stores.py [--seconds 10] [--connections 32] [--rounds 1]
    # with PostgreSQL: source .ci/services.sh; start_postgres; python3 ...
    # PostgreSQL on a core of its own, as on a host of its own:
    python3 scripts/load/stores.py --database-core

For each store and request it prints req/s, p50/p99/max latency, the
server's CPU time per request (user + system, from /proc), PostgreSQL's own
CPU per request, and the ratios to the memory store measured in the same
round. Every answer must be 200: refused requests are counted and fail the
run. Then it checks issue #12's targets: a static login costs at most 1.2x
the memory store's server CPU; single-use input JWTs reach at least 0.8x the
memory store's req/s with p99 under 10 ms and no request over 100 ms.

Loopback only. Needs wrk (installed from Debian's packages if missing), the
Python package cryptography, and cargo.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import HOST, Es256Signer, build_examples, ensure_wrk, stop, wait_for, write_lines  # noqa: E402

PORT = 19340
# The audience of the input JWTs: this server's token endpoint (RFC 7523 §3).
TOKEN_URL = f"http://{HOST}:{PORT}/application/o/token/"
PASSWORD = "load-app-password-not-a-secret"
ISSUER = "https://ci.load.test"
HERE = os.path.dirname(os.path.abspath(__file__))
BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TICKS = os.sysconf("SC_CLK_TCK")

CONFIG = f"""
issuer = "http://{HOST}:{PORT}"

[endpoint]
id_token = true

[store]
{{store}}
{{limits}}

[[applications]]
client_id = "demo-client"
slug = "demo"
scopes = ["read"]

[[applications]]
client_id = "ci-client"
slug = "ci"
scopes = ["deploy"]
[[applications.trusted_issuers]]
issuer = "{ISSUER}"
certificates = ["ci.pem"]

[[applications]]
client_id = "ci-once"
slug = "ci-once"
scopes = ["deploy"]
single_use_assertions = true
[[applications.trusted_issuers]]
issuer = "{ISSUER}"
certificates = ["ci.pem"]

[[service_accounts]]
username = "demo-deployer"
tokens = [{{{{ token = "{PASSWORD}" }}}}]
bindings = [{{{{ client_id = "demo-client", scopes = ["read"] }}}}]
"""

STATIC = (f"grant_type=client_credentials&client_id=demo-client&username=demo-deployer"
          f"&password={PASSWORD}&scope=read")
REQUESTS = ["static", "jwt", "jwt-once"]
TARGETS = {
    "static login: server CPU <= 1.2x memory": ("static", lambda r: r["cpu_ratio"] <= 1.2),
    "single-use JWTs: req/s >= 0.8x memory": ("jwt-once", lambda r: r["rps_ratio"] >= 0.8),
    "single-use JWTs: p99 < 10 ms": ("jwt-once", lambda r: r["p99_ms"] < 10),
    "single-use JWTs: no request over 100 ms": ("jwt-once", lambda r: r["max_ms"] < 100),
}


def cpu_seconds(pids):
    """User + system CPU seconds of `pids` (those still alive)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / TICKS


def postgres_pids():
    """The PostgreSQL server processes on this machine (backends included)."""
    pids = []
    for path in glob.glob("/proc/[0-9]*/comm"):
        try:
            with open(path) as comm:
                if comm.read().strip() == "postgres":
                    pids.append(int(path.split("/")[2]))
        except OSError:
            pass
    return pids


def psql_binary():
    """Debian's newest psql, else the one on PATH."""
    return (sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))[-1:] or ["psql"])[0]


def psql(url, *commands):
    for command in commands:
        subprocess.run([psql_binary(), url, "-q", "-c", command], check=True,
                       stdout=subprocess.DEVNULL)


def psql_rows(url, sql):
    """The rows of `sql` on `url`, each a list of strings."""
    out = subprocess.run([psql_binary(), url, "-At", "-F", "\t", "-c", sql], check=True,
                         capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def fresh_postgres_database(url):
    """A new empty database on the server of `url`; its URL."""
    psql(url, "DROP DATABASE IF EXISTS m2m_load", "CREATE DATABASE m2m_load")
    return urllib.parse.urlsplit(url)._replace(path="/m2m_load").geturl()


def assertion_bodies(signer, client_id, count, issuer=ISSUER, audience=TOKEN_URL):
    now = int(time.time())
    return [f"grant_type=client_credentials&client_id={client_id}&client_assertion_type={BEARER}"
            f"&client_assertion=" + signer.mint({"iss": issuer, "sub": f"job-{i % 20}",
                                                 "aud": audience,
                                                 "jti": str(uuid.uuid4()),
                                                 "iat": now, "exp": now + 3300})
            for i in range(count)]


def pinned(cores):
    """A `preexec_fn` that puts the child (and every thread it starts) on
    `cores`, or None to leave it where the kernel puts it."""
    return (lambda: os.sched_setaffinity(0, cores)) if cores else None


def split_cores(database_core):
    """With `database_core`: (the cores for the server and wrk, the last core
    for PostgreSQL); else (None, None): every process anywhere."""
    if not database_core:
        return None, None
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("--database-core needs at least 2 cores")
    return set(cores[:-1]), {cores[-1]}


DATABASE_CORE_HELP = ("PostgreSQL on the last core, the server and wrk on the others (as if the "
                      "database had a host of its own: its CPU no longer competes with the "
                      "server's)")


def pin_postgres(cores):
    """Puts PostgreSQL's processes on `cores`: the running ones, and the
    backends the postmaster forks from now on (they inherit its set)."""
    for pid in postgres_pids():
        try:
            os.sched_setaffinity(pid, cores)
        except ProcessLookupError:
            pass


def wrk(bodies_file, args, seconds, url=TOKEN_URL, bearer=False):
    """wrk on `url` with the lines of `bodies_file` (form bodies, or with
    `bearer` access tokens for `GET`s); its figures."""
    env = {**os.environ, "LOAD_BODIES": bodies_file, "LOAD_THREADS": str(args.threads)}
    if bearer:
        env["LOAD_BEARER"] = "1"
    output = subprocess.run(
        ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency",
         "-s", os.path.join(HERE, "stores.lua"), url],
        capture_output=True, text=True, timeout=seconds + 60, env=env,
        preexec_fn=pinned(args.load_cores),
    ).stdout
    refusal = re.search(r"REFUSED (.*)", output)
    if refusal:
        print(f"      first refusal: {refusal.group(1)}")
    line = re.search(r"LOAD (\{.*\})", output)
    if not line:
        sys.exit("wrk printed no figures:\n" + output)
    return json.loads(line.group(1))


def run_store(name, store_line, bodies, examples, directory, args, database_pids):
    """Starts the server on `store_line`, runs each request kind; figures."""
    with open(os.path.join(directory, "server.toml"), "w") as config:
        limits = ""
        if args.attempt_slots:
            limits = (f"[attempt_limits]\nper_client_id = {args.attempt_slots}\n"
                      f"per_address = {args.attempt_slots}\n")
        config.write(CONFIG.format(store=store_line, limits=limits))
    # The log goes to a file, as a service's goes to its journal: with
    # --rust-log info (the server's default), one audit line per token.
    log = open(os.path.join(directory, "server.log"), "wb")
    server = subprocess.Popen(
        [os.path.join(examples, "server"), "--config", os.path.join(directory, "server.toml"),
         "--listen", f"{HOST}:{PORT}"],
        stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "RUST_LOG": args.rust_log},
        cwd=directory, preexec_fn=pinned(args.load_cores))
    try:
        wait_for(PORT, seconds=60)
        wrk(bodies["static"], args, 2)  # warm-up: connections, caches, the page cache
        figures = {}
        for kind in REQUESTS:
            pids = database_pids()
            before = cpu_seconds([server.pid]), cpu_seconds(pids)
            result = wrk(bodies[kind], args, args.seconds)
            after = cpu_seconds([server.pid]), cpu_seconds(pids)
            n = max(result["requests"], 1)
            result["rps"] = result["requests"] / result["seconds"]
            result["cpu_us"] = (after[0] - before[0]) / n * 1e6
            result["db_cpu_us"] = (after[1] - before[1]) / n * 1e6 if pids else None
            figures[kind] = result
        return figures
    finally:
        stop([server])
        log.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--attempt-slots", type=int,
                        help="per_client_id and per_address of [attempt_limits] (default: the "
                             "defaults, 10 and 20: a client has at most that many credential "
                             "checks in flight; single-use writes wait after theirs)")
    parser.add_argument("--database-core", action="store_true",
                        help=DATABASE_CORE_HELP + "; the same cores for every store")
    parser.add_argument("--rust-log", default="error",
                        help="the server's RUST_LOG (default: error, no audit events; the "
                             "server's own default is info, an audit line per token)")
    parser.add_argument("--assertions", type=int,
                        help="input JWTs signed per JWT request kind, more than wrk sends "
                             "(default: 25,000 per second of --seconds)")
    args = parser.parse_args()
    args.assertions = args.assertions or 25_000 * args.seconds
    args.load_cores, database_cores = split_cores(args.database_core)
    ensure_wrk()
    examples = build_examples(("server", "sqlite,postgres"))
    pg_url = os.environ.get("TOWER_M2M_AUTH_PG_URL")
    signer = Es256Signer()
    ok = True
    with tempfile.TemporaryDirectory(prefix="m2m-load-") as directory:
        with open(os.path.join(directory, "ci.pem"), "wb") as pem:
            pem.write(signer.public_pem())
        print(f"signing {2 * args.assertions} input JWTs...", flush=True)
        bodies = {"static": os.path.join(directory, "static.txt")}
        write_lines(bodies["static"], [STATIC])
        for kind, client in (("jwt", "ci-client"), ("jwt-once", "ci-once")):
            bodies[kind] = os.path.join(directory, f"{kind}.txt")
            write_lines(bodies[kind], assertion_bodies(signer, client, args.assertions))

        stores = [("memory", "memory = true", lambda: []),
                  ("sqlite", 'sqlite = "load.db"', lambda: [])]
        if pg_url:
            stores.append(("postgres", None, postgres_pids))
            if args.database_core:
                pin_postgres(database_cores)
        print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, release example "
              "server; CPU = server process user+system per request")
        if args.load_cores:
            print(f"server and wrk on cores {sorted(args.load_cores)}, PostgreSQL on "
                  f"{sorted(database_cores)}")
        print(f"{'round':>5} {'store':9} {'request':9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'max ms':>7} {'CPU µs':>7} {'PG CPU µs':>9} {'req/s x':>8} {'CPU x':>6} refused")
        for round_ in range(1, args.rounds + 1):
            results = {}
            for name, store_line, database_pids in stores:
                for leftover in glob.glob(os.path.join(directory, "load.db*")):
                    os.remove(leftover)
                if name == "postgres":
                    store_line = f'postgres = "{fresh_postgres_database(pg_url)}"'
                results[name] = run_store(name, store_line, bodies, examples, directory, args,
                                          database_pids)
                for kind in REQUESTS:
                    r = results[name][kind]
                    memory = results["memory"][kind]
                    r["rps_ratio"] = r["rps"] / memory["rps"]
                    r["cpu_ratio"] = r["cpu_us"] / memory["cpu_us"]
                    db = f"{r['db_cpu_us']:9.0f}" if r["db_cpu_us"] is not None else f"{'':9}"
                    print(f"{round_:5} {name:9} {kind:9} {r['rps']:8.0f} {r['p50_ms']:7.2f} "
                          f"{r['p99_ms']:7.2f} {r['max_ms']:7.1f} {r['cpu_us']:7.0f} {db} "
                          f"{r['rps_ratio']:8.2f} {r['cpu_ratio']:6.2f} "
                          f"{r['refused'] + r['errors']}", flush=True)
                    if r["refused"] or r["errors"]:
                        ok = False
                    if kind != "static" and r["requests"] > args.assertions:
                        print("      (wrk sent more requests than there are input JWTs: the "
                              "rest were replays; raise --assertions)")
            for name in results:
                if name == "memory":
                    continue
                for target, (kind, check) in TARGETS.items():
                    passed = check(results[name][kind])
                    ok = ok and passed
                    print(f"      {name}: {target}: {'yes' if passed else 'NO'}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
