#!/usr/bin/env python3
"""Fetch N access tokens from the example token server, one per line.

    python3 examples/load/tokens.py 10000 > /tmp/tokens.txt

Uses the demo account of examples/server.toml over one keep-alive
connection. Another server: TOKEN_URL=http://host:port/application/o/token/,
another account: TOKEN_BODY='grant_type=client_credentials&client_id=...'.
"""

import http.client
import json
import os
import sys
import urllib.parse

URL = os.environ.get("TOKEN_URL", "http://127.0.0.1:9000/application/o/token/")
BODY = os.environ.get(
    "TOKEN_BODY",
    "grant_type=client_credentials&client_id=demo-client"
    "&username=demo-deployer&password=demo-app-password-not-a-secret&scope=read",
)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    url = urllib.parse.urlsplit(URL)
    connection = http.client.HTTPConnection(url.hostname, url.port or 80)
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(count):
        connection.request("POST", url.path, BODY, headers)
        response = connection.getresponse()
        payload = response.read()
        if response.status != 200:
            sys.exit(f"token request failed: {response.status} {payload[:200]!r}")
        print(json.loads(payload)["access_token"])


if __name__ == "__main__":
    main()
