#!/usr/bin/env python3
"""Buy one call from an x402-gated URL with the official x402 Python SDK.

Usage: pay.py URL [--method GET|POST] [--data TEXT] [--legacy-v1]

The buyer's private key comes from the environment variable ``X402_PRIVATE_KEY``.
Prints one JSON line: ``{"status", "body", "paymentResponse"}`` where
``paymentResponse`` is the decoded receipt (or null).

Default mode is the SDK's own client (``x402HttpxClient``): request, 402, sign, retry,
exactly as a buyer's code does. ``--legacy-v1`` plays a client that predates x402 v2:
it never looks at the ``PAYMENT-REQUIRED`` header, so the SDK reads the 402 body and
takes its v1 code path (``X-PAYMENT``, v1 payload, network names).

Run with the project's venv: tools/.venv/bin/python tools/python/pay.py URL
Exit codes: 0 a response was received (any status), 1 the SDK failed, 2 bad usage.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys


def _usage(msg: str) -> None:
    sys.stderr.write(f"pay: {msg}\n")
    sys.exit(2)


def _receipt(headers) -> dict | None:
    value = headers.get("payment-response") or headers.get("x-payment-response")
    if not value:
        return None
    return json.loads(base64.b64decode(value).decode("utf-8"))


def _client():
    from eth_account import Account
    from x402 import x402Client
    from x402.mechanisms.evm.exact import register_exact_evm_client
    from x402.mechanisms.evm.signers import EthAccountSigner

    key = os.environ.get("X402_PRIVATE_KEY", "").strip()
    if not key:
        _usage("X402_PRIVATE_KEY is not set")
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(key)))
    return client


async def pay_with_sdk_client(url: str, method: str, data: str | None) -> dict:
    from x402.http.clients import x402HttpxClient

    async with x402HttpxClient(_client(), timeout=60) as http:
        response = await http.request(method, url, content=data)
        body = (await response.aread()).decode("utf-8", "replace")
        return {
            "status": response.status_code,
            "body": body,
            "paymentResponse": _receipt(response.headers),
        }


async def pay_as_legacy_v1(url: str, method: str, data: str | None) -> dict:
    import httpx
    from x402.http import x402HTTPClient

    http_client = x402HTTPClient(_client())
    async with httpx.AsyncClient(timeout=60) as http:
        first = await http.request(method, url, content=data)
        if first.status_code != 402:
            return {"status": first.status_code, "body": first.text, "paymentResponse": None}
        # A v1 client knows nothing of PAYMENT-REQUIRED: hand the SDK the body only.
        headers, _payload = await http_client.handle_402_response({}, first.content, url)
        response = await http.request(method, url, content=data, headers=headers)
        return {
            "status": response.status_code,
            "body": response.text,
            "paymentResponse": _receipt(response.headers),
        }


def main(argv: list[str]) -> int:
    url = None
    method = "GET"
    data = None
    legacy = False
    args = iter(argv)
    for arg in args:
        if arg == "--method":
            method = next(args, "GET").upper()
        elif arg == "--data":
            data = next(args, None)
        elif arg == "--legacy-v1":
            legacy = True
        elif arg in ("-h", "--help"):
            sys.stdout.write(__doc__ or "")
            return 0
        elif url is None:
            url = arg
        else:
            _usage(f"unexpected argument {arg!r}")
    if url is None:
        _usage("give the URL to buy from")
    try:
        run = pay_as_legacy_v1 if legacy else pay_with_sdk_client
        result = asyncio.run(run(url, method, data))
    except Exception as e:  # noqa: BLE001 - report the SDK's own failure
        sys.stderr.write(f"pay: {type(e).__name__}: {e}\n")
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
