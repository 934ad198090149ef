#!/usr/bin/env python3
"""The floor under the SQLite store's single-use writes: what SQLite itself
(and the kernel under it) costs per replay-cache write on this machine, with
nothing of this crate around it.

    python3 scripts/load/sqlite_floor.py [--writes 40000]

It creates the replay-cache table of migrations 0001 and 0005 (random 64-hex-digit
keys, as the store's digests are) in a new WAL database and records keys in
batches of 1, 8 and 32, each batch one statement of the store's own
FIRST_USES form (a JSON array through json_each, RETURNING the recorded
keys), committed on its own, at `synchronous` FULL (the store's setting),
NORMAL and OFF. It prints the process CPU time per write (the loop's own
Python work, measured separately, subtracted) and the wall time per write.

Python's sqlite3 module runs the same C library the store links (another
version, the same I/O path), so the figures are the cost no client of
SQLite on this disk can go below; compare them with the store's extra CPU
per single-use request in scripts/load/stores.py.
"""

import argparse
import json
import os
import secrets
import sqlite3
import tempfile
import time

TABLE = """
CREATE TABLE m2m_replay_cache (
    key     TEXT    NOT NULL PRIMARY KEY,
    expires INTEGER NOT NULL
) WITHOUT ROWID;
"""

FIRST_USES = (
    "INSERT INTO m2m_replay_cache (key, expires) "
    "SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') "
    "FROM json_each(?) WHERE true ORDER BY key "
    "ON CONFLICT (key) DO UPDATE SET expires = excluded.expires "
    "WHERE m2m_replay_cache.expires < ? RETURNING key"
)


def batches(writes, size, now):
    """The JSON arrays of `writes` new keys, `size` a batch."""
    for i in range(writes // size):
        yield json.dumps([[secrets.token_hex(32), now + 300 + i // 1000] for _ in range(size)])


def measure(directory, synchronous, size, writes):
    """CPU and wall microseconds per write."""
    path = os.path.join(directory, f"floor-{synchronous}-{size}.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.executescript(TABLE)
    now = int(time.time())
    cpu, wall = time.process_time(), time.time()
    for array in batches(writes, size, now):
        recorded = db.execute(FIRST_USES, (array, now)).fetchall()
        assert len(recorded) == size
    cpu, wall = time.process_time() - cpu, time.time() - wall
    # The loop's own work (keys, JSON), without the database.
    own = time.process_time()
    for _ in batches(writes, size, now):
        pass
    own = time.process_time() - own
    db.close()
    return 1e6 * (cpu - own) / writes, 1e6 * wall / writes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=40000)
    args = parser.parse_args()
    print(f"SQLite {sqlite3.sqlite_version}, {args.writes} writes per row (8,000 unbatched)")
    print("synchronous  batch  CPU us/write  wall us/write")
    with tempfile.TemporaryDirectory(prefix="m2m-floor-") as directory:
        for synchronous in ("FULL", "NORMAL", "OFF"):
            for size in (1, 8, 32):
                writes = min(args.writes, 8000) if size == 1 else args.writes
                cpu, wall = measure(directory, synchronous, size, writes)
                print(f"{synchronous:11} {size:6} {cpu:13.1f} {wall:14.1f}")


if __name__ == "__main__":
    main()
