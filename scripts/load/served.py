#!/usr/bin/env python3
"""What a served request costs: the release example server under wrk on
loopback, beside the floor of this machine, with each of its observability
features and the attempt limiter switched off in turn, and optionally
beside an earlier build, all in one sitting.

    python3 scripts/load/served.py [--seconds 10] [--rounds 1] [--base ea76149]

Jobs (CPU = the server process's user + system time per request, from /proc):

  floor           a hello on the example server's connection handling
                  (examples/floor.rs)
  floor+sign      the same and one raw ES256 signature (aws-lc-rs)
  floor+verify    the same and one raw ES256 verification, key parsed once
  static          the example server: username + app password
  client_secret   the example server: an application's own client secret
  private_key_jwt the example server: a new ES256 input JWT per request,
                  single-use jti (a replay-cache write each)
  api             the example server's sample API, one cached token
  validator       examples/downstream with its token cache off, 10,000
                  rotating tokens (a signature check each), beside
                  floor+verify on axum::serve, as downstream serves

Variants of the example server: `defaults` (audit events, metrics with a
Prometheus recorder, spans, the attempt limiter: all on, as deployed), then
each of `no-audit`, `no-metrics`, `no-spans`, `no-limiter`. A feature's share
is what turning it off saves, over the defaults' CPU per request.

`--base REV` builds the example server of REV (a git worktree) and runs the
token jobs on it in the same sitting, alternating with this tree each round.

Every answer must be 200, and every token issued on the defaults must have
its audit line in the server's log (counted against the 200s): else FAIL.
Then it prints issue #22's targets. Loopback only; needs wrk (installed from
Debian's packages if missing), the Python package cryptography, and cargo.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import HOST, ROOT, Es256Signer, build_examples, ensure_wrk, stop, wait_for, write_lines  # noqa: E402
import stores  # noqa: E402

SERVER_PORT = 19350
METRICS_PORT = 19351
FLOOR_PORT = 19352
DOWNSTREAM_PORT = 19353
BASE_URL = f"http://{HOST}:{SERVER_PORT}"
TOKEN_URL = f"{BASE_URL}/application/o/token/"
PASSWORD = "served-app-password-not-a-secret"
SECRET = "served-client-secret-not-a-secret"
ISSUER = "https://ci.served.test"
AUDIT_LINE = re.compile(rb'event="?token_issued')

# The configuration of every variant; `{metrics}` and `{limits}` vary.
CONFIG = f"""
issuer = "{BASE_URL}"

[store]
memory = true
{{metrics}}
{{limits}}

[[applications]]
client_id = "demo-client"
slug = "demo"
scopes = ["read"]

[[applications]]
client_id = "orders-api"
slug = "orders"
scopes = ["read"]
client_secret = "{SECRET}"

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

METRICS = f'[metrics]\nlisten = "{HOST}:{METRICS_PORT}"'
NO_LIMITER = "[attempt_limits]\nenabled = false"

# name: (config's metrics table, its attempt limits, RUST_LOG or None for the server's default)
VARIANTS = {
    "defaults": (METRICS, "", None),
    "no-audit": (METRICS, "", "info,tower_m2m_auth::audit=off"),
    "no-metrics": ("", "", None),
    "no-spans": (METRICS, "", "info,tower_m2m_auth=warn,tower_m2m_auth::audit=info"),
    "no-limiter": (METRICS, NO_LIMITER, None),
}
# The configuration an earlier build understands: no [metrics] nor
# [attempt_limits], and certificates of the application itself (before
# issuer-bound trust: ea76149).
BASE_VARIANT = ("", "", None)
TRUSTED_ISSUER = f"""[[applications.trusted_issuers]]
issuer = "{ISSUER}"
certificates = ["ci.pem"]"""
BINDINGS = '\nbindings = [{{ client_id = "demo-client", scopes = ["read"] }}]'
BASE_CONFIG = (CONFIG.replace(TRUSTED_ISSUER, 'verification_certificates = ["ci.pem"]')
               .replace(BINDINGS, ""))

TOKEN_JOBS = ["static", "client_secret", "private_key_jwt"]
SERVER_JOBS = TOKEN_JOBS + ["api"]
BODIES = {
    "static": (f"grant_type=client_credentials&client_id=demo-client&username=demo-deployer"
               f"&password={PASSWORD}&scope=read"),
    "client_secret": f"grant_type=client_credentials&client_id=orders-api&client_secret={SECRET}",
}


class Run:
    """One measured wrk run against one process."""

    def __init__(self, args, pid, url, lines, bearer=False):
        before = stores.cpu_seconds([pid])
        self.figures = stores.wrk(lines, args, args.seconds, url=url, bearer=bearer)
        self.cpu_us = (stores.cpu_seconds([pid]) - before) / max(self.figures["requests"], 1) * 1e6
        self.rps = self.figures["requests"] / self.figures["seconds"]
        self.failed = self.figures["refused"] + self.figures["errors"]
        self.answered = self.figures["requests"] - self.failed


def audit_lines(path):
    """The audit lines of issued tokens in the log at `path`, once the log
    has stopped growing (a non-blocking writer may still be draining)."""
    count, size = -1, -1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(path, "rb") as log:
            data = log.read()
        if len(data) == size:
            break
        size, count = len(data), len(AUDIT_LINE.findall(data))
        time.sleep(0.3)
    return count


def tokens_issued(metrics):
    """The tokens the server says it issued (its Prometheus counter), or
    None without `[metrics]`."""
    if not metrics:
        return None
    with urllib.request.urlopen(f"http://{HOST}:{METRICS_PORT}/metrics") as page:
        return sum(float(line.rsplit(" ", 1)[1]) for line in page.read().decode().splitlines()
                   if line.startswith("tower_m2m_auth_tokens_issued_total"))


def start(command, log_path, env=None, cwd=None):
    log = open(log_path, "wb")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=cwd,
                               env={**os.environ, **(env or {})})
    process.log = log
    return process


def wait_started(process, port):
    """Waits until `process` listens on `port`; exits with its log if not."""
    try:
        wait_for(port, seconds=60)
    except SystemExit:
        process.kill()
        process.log.close()
        with open(process.log.name, "rb") as log:
            sys.exit(f"{process.args[0]} did not start:\n{log.read()[-2000:].decode(errors='replace')}")


def halt(process):
    stop([process])
    process.log.close()


def run_server(binary, variant, files, directory, args, audited, base=False):
    """Starts the example server `binary` on `variant` (`base`: in the
    configuration of an earlier build), runs each server job; {job: Run}.
    With `audited`, checks each token job's audit lines."""
    metrics, limits, rust_log = variant
    config = os.path.join(directory, "served.toml")
    with open(config, "w") as file:
        file.write((BASE_CONFIG if base else CONFIG).format(metrics=metrics, limits=limits))
    log_path = os.path.join(directory, "server.log")
    env = {"RUST_LOG": rust_log} if rust_log else {}
    if not rust_log:
        os.environ.pop("RUST_LOG", None)
    server = start([binary, "--config", config, "--listen", f"{HOST}:{SERVER_PORT}"], log_path,
                   env=env, cwd=directory)
    try:
        wait_started(server, SERVER_PORT)
        # The sample API's one token (its signing key may be made at start).
        write_lines(files["api"], [post(TOKEN_URL, BODIES["static"], "access_token")])
        stores.wrk(files["client_secret"], args, 2, url=TOKEN_URL)  # warm-up
        results = {}
        for job in SERVER_JOBS:
            url, bearer = (f"{BASE_URL}/api/hello", True) if job == "api" else (TOKEN_URL, False)
            before = audit_lines(log_path), tokens_issued(metrics)
            run = Run(args, server.pid, url, files[job], bearer)
            run.audited = audit_lines(log_path) - before[0]
            # Every token issued has its line: counted against the server's
            # own counter, else against wrk's 200s (the requests still in
            # flight when wrk stops are answered, but not counted by wrk).
            issued = tokens_issued(metrics)
            issued = (issued - before[1]) if issued is not None else None
            complete = (run.audited == issued if issued is not None else
                        run.answered <= run.audited <= run.answered + args.connections)
            if audited and job in TOKEN_JOBS and not complete:
                print(f"      {job}: {issued or run.answered} tokens issued, "
                      f"{run.audited} audit lines")
                run.failed += 1
            results[job] = run
        return results
    finally:
        halt(server)


def run_floor(binary, files, directory, args, axum_serve=False):
    command = [binary, "--listen", f"{HOST}:{FLOOR_PORT}"] + (["--axum-serve"] if axum_serve else [])
    floor = start(command, os.path.join(directory, "floor.log"))
    try:
        wait_started(floor, FLOOR_PORT)
        url = f"http://{HOST}:{FLOOR_PORT}"
        # Its key is new at each start: so are its tokens.
        write_lines(files["floor-tokens"], [post(f"{url}/sign") for _ in range(10_000)])
        jobs = {"floor": (f"{url}/hello", files["empty"], False),
                "floor+verify": (f"{url}/verify", files["floor-tokens"], True)}
        if not axum_serve:
            jobs["floor+sign"] = (f"{url}/sign", files["empty"], False)
        return {job: Run(args, floor.pid, *spec) for job, spec in jobs.items()}
    finally:
        halt(floor)


def run_validator(server_binary, downstream_binary, files, directory, args):
    """downstream with its cache off, trusting the example server's demo
    application (whose JWKS it fetches), on 10,000 rotating tokens."""
    config = os.path.join(directory, "served.toml")
    with open(config, "w") as file:
        file.write(CONFIG.format(metrics="", limits=""))
    server = start([server_binary, "--config", config, "--listen", f"{HOST}:{SERVER_PORT}"],
                   os.path.join(directory, "server.log"), cwd=directory)
    try:
        wait_started(server, SERVER_PORT)
        write_lines(files["tokens"], [post(TOKEN_URL, BODIES["static"], "access_token")
                                      for _ in range(10_000)])
        downstream = start([downstream_binary, "--listen", f"{HOST}:{DOWNSTREAM_PORT}",
                            "--issuer", f"{BASE_URL}/application/o/demo/", "--no-cache"],
                           os.path.join(directory, "downstream.log"), env={"RUST_LOG": "warn"})
        try:
            wait_started(downstream, DOWNSTREAM_PORT)
            url = f"http://{HOST}:{DOWNSTREAM_PORT}/api/hello"
            stores.wrk(files["tokens"], args, 1, url=url, bearer=True)  # warm-up: the JWKS
            return {"validator": Run(args, downstream.pid, url, files["tokens"], bearer=True)}
        finally:
            halt(downstream)
    finally:
        halt(server)


def post(url, body="", field=None):
    """One POST; its body, or the JSON `field` of it."""
    with urllib.request.urlopen(urllib.request.Request(url, data=body.encode(), headers={
            "Content-Type": "application/x-www-form-urlencoded"})) as response:
        text = response.read().decode()
    if field:
        import json
        return json.loads(text)[field]
    return text


def base_server(rev, directory):
    """The release example server of `rev`, built in a worktree (or `rev`
    itself when it is the path of a built server)."""
    if os.path.isfile(rev):
        return rev
    worktree = os.path.join(directory, "base")
    subprocess.run(["git", "worktree", "add", "--detach", worktree, rev], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    env = {**os.environ, "CARGO_TARGET_DIR": os.path.join(target, "served-base")}
    print(f"building the example server of {rev}...", flush=True)
    subprocess.run(["cargo", "build", "--quiet", "--release", "--example", "server",
                    "--features", "sqlite,postgres"],
                   cwd=worktree, check=True, env=env)
    binary = os.path.join(directory, "base-server")
    shutil.copy(os.path.join(env["CARGO_TARGET_DIR"], "release", "examples", "server"), binary)
    subprocess.run(["git", "worktree", "remove", "--force", worktree], cwd=ROOT, check=True)
    return binary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--base", metavar="REV",
                        help="also measure the example server of this git revision (or "
                             "this built server binary)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="the variants to run, comma-separated (default: all)")
    args = parser.parse_args()
    args.load_cores = None
    variants = args.variants.split(",")
    ensure_wrk()
    examples = build_examples(("server", "sqlite,postgres"), ("floor", None), ("downstream", "axum"))
    server, floor, downstream = (os.path.join(examples, name)
                                 for name in ("server", "floor", "downstream"))
    signer = Es256Signer()
    ok = True
    with tempfile.TemporaryDirectory(prefix="m2m-served-") as directory:
        base = base_server(args.base, directory) if args.base else None
        with open(os.path.join(directory, "ci.pem"), "wb") as pem:
            pem.write(signer.public_pem())
        files = {name: os.path.join(directory, f"{name}.txt")
                 for name in ("empty", "static", "client_secret", "private_key_jwt",
                              "api", "tokens", "floor-tokens")}
        write_lines(files["empty"], [""])
        for job, body in BODIES.items():
            write_lines(files[job], [body])
        # More single-use assertions than one run can send: each server
        # starts with an empty replay cache, so every run may reuse them.
        count = 15_000 * args.seconds
        print(f"signing {count} input JWTs...", flush=True)
        write_lines(files["private_key_jwt"],
                    stores.assertion_bodies(signer, "ci-once", count, ISSUER, TOKEN_URL))

        print(f"wrk -t{args.threads} -c{args.connections} -d{args.seconds}s on loopback, release "
              "builds; CPU = the server process's user+system per request")
        print(f"{'round':>5} {'build':6} {'variant':11} {'job':16} {'req/s':>8} {'p99 ms':>7} "
              f"{'CPU µs':>7} {'CPU x':>6} {'share':>6} {'audit':>7} failed")
        summary = {}
        for round_ in range(1, args.rounds + 1):
            rows = []
            floor_runs = run_floor(floor, files, directory, args)
            rows += [("floor", "-", job, run) for job, run in floor_runs.items()]
            builds = [("tree", server)] + ([("base", base)] if base else [])
            if round_ % 2 == 0:
                builds.reverse()
            tree_runs = {}
            for build, binary in builds:
                for variant in (variants if build == "tree" else ["defaults"]):
                    runs = run_server(binary, VARIANTS[variant] if build == "tree"
                                      else BASE_VARIANT, files, directory, args,
                                      audited=build == "tree" and variant != "no-audit",
                                      base=build == "base")
                    if build == "tree":
                        tree_runs[variant] = runs
                    rows += [(build, variant, job, run) for job, run in runs.items()]
            axum_floor = run_floor(floor, files, directory, args, axum_serve=True)
            rows += [("floor", "axum", job, run) for job, run in axum_floor.items()]
            rows += [("tree", "-", job, run) for job, run in
                     run_validator(server, downstream, files, directory, args).items()]
            defaults = tree_runs.get("defaults", {})
            for build, variant, job, run in rows:
                reference = defaults.get(job)
                ratio = share = ""
                if build == "base" and reference:
                    ratio = f"{reference.cpu_us / run.cpu_us:6.2f}"
                if build == "tree" and variant not in ("defaults", "-") and reference:
                    share = f"{(reference.cpu_us - run.cpu_us) / reference.cpu_us * 100:5.1f}%"
                audit = str(run.audited) if hasattr(run, "audited") and job in TOKEN_JOBS else ""
                print(f"{round_:5} {build:6} {variant:11} {job:16} {run.rps:8.0f} "
                      f"{run.figures['p99_ms']:7.2f} {run.cpu_us:7.1f} {ratio:>6} {share:>6} "
                      f"{audit:>7} {run.failed}", flush=True)
                ok = ok and run.failed == 0
                summary.setdefault((build, variant, job), []).append(run.cpu_us)
        ok = print_targets(summary, base is not None) and ok
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def print_targets(summary, with_base):
    """Issue #22's targets, on the mean of the rounds; whether all were met
    (the comparison with the base only when it ran)."""
    def cpu(*key):
        values = summary.get(key)
        return sum(values) / len(values) if values else None

    floor, sign, verify = (cpu("floor", "-", job) for job in ("floor", "floor+sign", "floor+verify"))
    ceiling = floor + (sign - floor) + (verify - floor)
    targets = []
    if with_base:
        for job in ("client_secret", "private_key_jwt"):
            ratio = cpu("tree", "defaults", job) / cpu("base", "defaults", job)
            targets.append((f"{job}: CPU per request <= 1.1x the base's ({ratio:.2f}x)",
                            ratio <= 1.1))
    for variant in ("no-audit", "no-metrics", "no-spans"):
        for job in TOKEN_JOBS:
            if cpu("tree", variant, job) is None:
                continue
            share = 1 - cpu("tree", variant, job) / cpu("tree", "defaults", job)
            targets.append((f"{variant[3:]} costs <= 5% of {job} ({share * 100:.1f}%)",
                            share <= 0.05))
    pkj = cpu("tree", "defaults", "private_key_jwt")
    targets.append((f"private_key_jwt >= 0.85 of the served crypto ceiling, floor + sign + "
                    f"verify = {ceiling:.0f} µs ({ceiling / pkj:.2f})", ceiling / pkj >= 0.85))
    validator, axum_verify = cpu("tree", "-", "validator"), cpu("floor", "axum", "floor+verify")
    targets.append((f"validator, cache off, rotating >= 0.8 of floor + verify "
                    f"({axum_verify / validator:.2f})", axum_verify / validator >= 0.8))
    for target, passed in targets:
        print(f"      {target}: {'yes' if passed else 'NO'}")
    return all(passed for _, passed in targets)


if __name__ == "__main__":
    sys.exit(main())
