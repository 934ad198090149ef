#!/usr/bin/env python3
"""DPoP interop: requests_oauth2client (a client nobody here wrote) gets a
DPoP-bound token with the client-credentials grant, then calls an API with it.

Usage: dpop_client.py TOKEN_URL CLIENT_ID CLIENT_SECRET API_URL

Prints one JSON object: the token type, the status and body of two API calls
with the bound token (each with a fresh proof), and the status of the same
token sent as a plain bearer token (a downgrade, which must be refused).
"""

import json
import sys

import requests
from requests_oauth2client import DPoPToken, OAuth2Client


def main() -> None:
    token_url, client_id, client_secret, api_url = sys.argv[1:5]
    client = OAuth2Client(
        token_url,
        client_id=client_id,
        client_secret=client_secret,
        dpop_bound_access_tokens=True,
        testing=True,  # plain http on 127.0.0.1
    )
    token = client.client_credentials(scope="read")
    assert isinstance(token, DPoPToken), type(token)
    calls = [requests.get(api_url, auth=token, timeout=10) for _ in range(2)]
    downgrade = requests.get(
        api_url,
        headers={"Authorization": f"Bearer {token.access_token}"},
        timeout=10,
    )
    print(
        json.dumps(
            {
                "token_type": token.token_type,
                "statuses": [call.status_code for call in calls],
                "body": calls[0].text,
                "downgrade_status": downgrade.status_code,
                "downgrade_challenge": downgrade.headers.get("WWW-Authenticate", ""),
            }
        )
    )


if __name__ == "__main__":
    main()
