#!/usr/bin/env python3
"""Sign an x402 "exact" EVM payment with the official x402 Python SDK.

Reads a PaymentRequired JSON object on stdin (v2:
``{"x402Version":2,"resource":{...},"accepts":[...]}``; a v1 body also works),
takes the buyer's private key from the environment variable ``X402_PRIVATE_KEY``
and prints, on one line, the payment payload JSON exactly as the SDK would
base64-encode it into the ``PAYMENT-SIGNATURE`` header (``X-PAYMENT`` for v1).

It goes through the same code path a buyer's HTTP client takes after a 402:
``x402HTTPClientSync.handle_402_response`` (decode the PAYMENT-REQUIRED header,
select a requirement, ``ExactEvmScheme`` signs the EIP-3009 authorization via
``EthAccountSigner``, encode the header), then decodes that header value.
No network access is needed.

Options / environment:
  --header                 print the base64 header value instead of the JSON
  X402_SPEND_CONTROLS=off  disable the SDK's default spend controls (which allow
                           only its built-in assets and at most $1 per payment)

Run with the project's venv: tools/.venv/bin/python tools/python/sign_exact.py
Exit codes: 0 ok, 1 the SDK refused or failed, 2 bad input or usage.
"""

from __future__ import annotations

import base64
import json
import os
import sys


def _die(code: int, msg: str) -> None:
    sys.stderr.write(f"sign_exact: {msg}\n")
    sys.exit(code)


class SignError(Exception):
    """Signing failed; ``code`` is the exit code (1 the SDK refused, 2 bad input)."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code


def sign_header(required: dict, key: str, spend_controls: bool = True) -> str:
    """Sign a payment for a PaymentRequired object through the official SDK's buyer
    path and return the header value (base64 JSON) it would send.

    Shared with facilitator_interop.py so both sign exactly as a buyer's client does.
    """
    try:
        from eth_account import Account
        from x402 import x402ClientSync
        from x402.http import x402HTTPClientSync
        from x402.http.constants import PAYMENT_REQUIRED_HEADER
        from x402.mechanisms.evm.exact import register_exact_evm_client
        from x402.mechanisms.evm.signers import EthAccountSigner
    except ImportError as e:
        raise SignError(
            2, f"x402 SDK not importable ({e}); run scripts/setup and use tools/.venv/bin/python"
        ) from e

    try:
        account = Account.from_key(key)
    except Exception as e:  # noqa: BLE001 - report any key parsing failure
        raise SignError(2, f"X402_PRIVATE_KEY is not a valid private key: {e}") from e

    client = x402ClientSync()
    if not spend_controls:
        client.set_spend_controls(False)
    register_exact_evm_client(client, EthAccountSigner(account))
    http_client = x402HTTPClientSync(client)

    # Present the requirement the way a server does: v2 in the PAYMENT-REQUIRED
    # header (base64 JSON), v1 in the response body.
    compact = json.dumps(required, separators=(",", ":")).encode("utf-8")
    if required.get("x402Version") == 1:
        headers: dict[str, str] = {}
        body: bytes | None = compact
    else:
        headers = {PAYMENT_REQUIRED_HEADER: base64.b64encode(compact).decode("ascii")}
        body = None
    resource = required.get("resource")
    url = resource.get("url") if isinstance(resource, dict) else None
    if not url and required.get("accepts"):
        first = required["accepts"][0]
        url = first.get("resource") if isinstance(first, dict) else None

    try:
        payment_headers, _payload = http_client.handle_402_response(
            headers, body, url or "http://localhost/"
        )
    except Exception as e:  # noqa: BLE001 - surface the SDK's own message
        raise SignError(1, f"{type(e).__name__}: {e}") from e

    if not payment_headers:
        raise SignError(1, "the SDK produced no payment header")
    (header_value,) = payment_headers.values()
    return header_value


def main(argv: list[str]) -> int:
    as_header = False
    for arg in argv:
        if arg == "--header":
            as_header = True
        elif arg in ("-h", "--help"):
            sys.stdout.write(__doc__ or "")
            return 0
        else:
            _die(2, f"unknown argument: {arg}")

    key = os.environ.get("X402_PRIVATE_KEY", "").strip()
    if not key:
        _die(2, "X402_PRIVATE_KEY is not set")

    raw = sys.stdin.read()
    try:
        required = json.loads(raw)
    except json.JSONDecodeError as e:
        _die(2, f"stdin is not JSON: {e}")
    if not isinstance(required, dict):
        _die(2, "stdin must be a JSON object (a PaymentRequired)")

    spend_controls = os.environ.get("X402_SPEND_CONTROLS", "").lower() not in (
        "off",
        "0",
        "false",
        "no",
    )
    try:
        header_value = sign_header(required, key, spend_controls)
    except SignError as e:
        _die(e.code, str(e))

    if as_header:
        sys.stdout.write(header_value + "\n")
    else:
        decoded = json.loads(base64.b64decode(header_value).decode("utf-8"))
        sys.stdout.write(json.dumps(decoded, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
