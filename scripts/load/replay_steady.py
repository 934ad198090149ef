#!/usr/bin/env python3
"""The replay cache at a steady state (SQLite, or PostgreSQL with --postgres):
single-use input JWTs that live LIFETIME seconds, under wrk for SECONDS
seconds, so that keys expire and are purged while new ones arrive
(scripts/load/stores.py starts from an empty cache and gives every JWT one
`exp`).

    python3 scripts/load/replay_steady.py [--seconds 120] [--rate 7000] [--lifetime 20]
    python3 scripts/load/replay_steady.py --postgres   # TOWER_M2M_AUTH_PG_URL, e.g. after
                                                       # `source .ci/services.sh; start_postgres`
    python3 scripts/load/replay_steady.py --postgres --database-core

The JWTs are signed beforehand: JWT i is planned to arrive at second i/RATE
of the run and expires LIFETIME seconds after that. Set RATE below what the
server does, so that JWTs arrive before their planned second, never after
their `exp`. Every 10 s it prints the replay cache's rows (live, and
expired but not yet purged) and the database's size (SQLite: the file;
PostgreSQL: the table with its indexes); at the end req/s, p99, max and
refused (must be 0).

Loopback only. Needs wrk (installed from Debian's packages if missing), the
Python package cryptography, and cargo.
"""

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import Es256Signer, build_examples, ensure_wrk, stop, wait_for, write_lines  # noqa: E402
import stores  # noqa: E402

SIGNING_PER_SECOND = 30_000  # this machine's pace, to plan the start


def bodies(signer, count, start, rate, lifetime):
    """The form bodies of `count` single-use JWTs, planned from `start`."""
    for i in range(count):
        arrival = start + i // rate
        claims = {"iss": stores.ISSUER, "sub": f"job-{i % 20}", "jti": str(uuid.uuid4()),
                  "aud": stores.TOKEN_URL,
                  "iat": start - 1, "exp": arrival + lifetime}
        yield (f"grant_type=client_credentials&client_id=ci-once"
               f"&client_assertion_type={stores.BEARER}&client_assertion={signer.mint(claims)}")


COUNT = "SELECT count(*), count(*) FILTER (WHERE expires >= {now}) FROM m2m_replay_cache"


def sqlite_counter(database):
    """Rows, live rows and MB of the SQLite file `database`."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)

    def count(now):
        rows, live = db.execute(COUNT.format(now=now)).fetchone()
        return rows, live, os.path.getsize(database) / 1e6
    return count


def postgres_counter(url):
    """Rows, live rows and MB of the replay cache in the PostgreSQL database `url`."""
    def count(now):
        sql = (f"SELECT c.*, pg_total_relation_size('m2m_replay_cache') "
               f"FROM ({COUNT.format(now=now)}) AS c")
        rows, live, size = map(int, stores.psql_rows(url, sql)[0])
        return rows, live, size / 1e6
    return count


def sample(count, seconds, printed):
    """Every 10 s: the replay cache's rows, live and expired, and its size."""
    for tick in range(1, seconds // 10 + 1):
        time.sleep(10)
        rows, live, size = count(int(time.time()))
        printed.append(rows - live)
        print(f"  {10 * tick:4} s: {rows:8} rows, {live:8} live, {rows - live:7} expired, "
              f"{size:6.1f} MB", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=120)
    parser.add_argument("--rate", type=int, default=7000)
    parser.add_argument("--lifetime", type=int, default=20)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--postgres", action="store_true",
                        help="the store in PostgreSQL at TOWER_M2M_AUTH_PG_URL (a fresh database)")
    parser.add_argument("--database-core", action="store_true", help=stores.DATABASE_CORE_HELP)
    args = parser.parse_args()
    load_cores, database_cores = stores.split_cores(args.database_core)
    if args.postgres:
        pg_url = os.environ.get("TOWER_M2M_AUTH_PG_URL")
        if not pg_url:
            raise SystemExit("--postgres needs TOWER_M2M_AUTH_PG_URL")
        url = stores.fresh_postgres_database(pg_url)
        if database_cores:
            stores.pin_postgres(database_cores)
    ensure_wrk()
    examples = build_examples(("server", "postgres" if args.postgres else "sqlite"))
    signer = Es256Signer()
    count = int(args.seconds * args.rate * 1.6)
    start = int(time.time() + count / SIGNING_PER_SECOND + 5)
    with tempfile.TemporaryDirectory(prefix="m2m-steady-") as directory:
        with open(os.path.join(directory, "ci.pem"), "wb") as pem:
            pem.write(signer.public_pem())
        with open(os.path.join(directory, "server.toml"), "w") as config:
            store = f'postgres = "{url}"' if args.postgres else 'sqlite = "load.db"'
            config.write(stores.CONFIG.format(store=store, limits=""))
        path = os.path.join(directory, "bodies.txt")
        print(f"signing {count} input JWTs...", flush=True)
        write_lines(path, bodies(signer, count, start, args.rate, args.lifetime))
        server = subprocess.Popen(
            [os.path.join(examples, "server"), "--config", os.path.join(directory, "server.toml"),
             "--listen", f"{stores.HOST}:{stores.PORT}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "RUST_LOG": "error"}, cwd=directory,
            preexec_fn=stores.pinned(load_cores))
        try:
            wait_for(stores.PORT, seconds=60)
            time.sleep(max(0.0, start - time.time()))
            expired = []
            count = (postgres_counter(url) if args.postgres
                     else sqlite_counter(os.path.join(directory, "load.db")))
            sampler = threading.Thread(target=sample, args=(count, args.seconds, expired))
            sampler.start()
            wrk_args = argparse.Namespace(threads=1, connections=args.connections,
                                          load_cores=load_cores)
            result = stores.wrk(path, wrk_args, args.seconds)
            sampler.join()
        finally:
            stop([server])
    rps = result["requests"] / result["seconds"]
    print(f"{rps:.0f} req/s, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms, "
          f"refused {result['refused']}")
    sys.exit(0 if result["refused"] == 0 else 1)


if __name__ == "__main__":
    main()
