"""What the scripts under scripts/ share: building the release examples,
waiting for a server, wrk, and signing ES256 input JWTs. Loopback only."""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_examples(*examples):
    """Builds each `(example, features)` in release; the examples' folder."""
    for example, features in examples:
        command = ["cargo", "build", "--quiet", "--release", "--example", example]
        if features:
            command += ["--features", features]
        subprocess.run(command, cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", "examples")


def write_lines(path, lines):
    """Writes `lines` to `path`, one per line, and syncs the file to disk
    before returning. A load script's request bodies run to hundreds of MB;
    left to the kernel, their writeback starts about 30 s later, during the
    measurement, and the store's syncs to disk wait behind it (measured:
    the replay cache's commits and any other file's fsync stalled 100-150 ms
    at once, 20 s into a run)."""
    with open(path, "w") as file:
        for line in lines:
            file.write(line + "\n")
        file.flush()
        os.fsync(file.fileno())


def wait_for(port, seconds=30):
    """Waits until something accepts connections on `port`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {HOST}:{port}")


def ensure_wrk():
    """Installs wrk from Debian's packages when it is missing."""
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class Es256Signer:
    """An external issuer's ES256 key, signing input JWTs (needs the Python
    package cryptography)."""

    def __init__(self):
        try:
            from cryptography.hazmat.primitives.asymmetric import ec
        except ImportError:
            sys.exit("needs the Python package cryptography: pip install cryptography")
        self.key = ec.generate_private_key(ec.SECP256R1())

    def public_pem(self):
        from cryptography.hazmat.primitives import serialization

        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def mint(self, claims):
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        header = b64url(json.dumps({"alg": "ES256", "typ": "JWT"}).encode())
        payload = b64url(json.dumps(claims).encode())
        der = self.key.sign(f"{header}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{header}.{payload}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def stop(processes):
    """SIGTERM to each process, then waits for it."""
    import signal

    for process in processes:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=40)


async def post_form(port, path, fields, basic=None, timeout=30.0):
    """One form POST on a fresh connection (`basic`: `user:password`):
    its status and JSON body (None when the body is not JSON)."""
    import asyncio
    import urllib.parse

    body = urllib.parse.urlencode(fields)
    head = f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n"
    head += "Content-Type: application/x-www-form-urlencoded\r\n"
    if basic:
        head += "Authorization: Basic " + base64.b64encode(basic.encode()).decode() + "\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write((head + body).encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    try:
        return status, json.loads(rest) if rest else None
    except ValueError:
        return status, None
