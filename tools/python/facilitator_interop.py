#!/usr/bin/env python3
"""Pay through an x402 facilitator with the official x402 Python SDK, end to end.

Signs an "exact" EVM payment for a v2 PaymentRequirements object with the SDK's buyer
path (the same code as sign_exact.py), then hands it to the SDK's own HTTP facilitator
client (``x402.http.HTTPFacilitatorClientSync``), exactly as the SDK's resource-server
middleware does: ``GET /supported``, ``POST /verify`` and, when valid, ``POST /settle``.
Prints one JSON line:

  {"facilitator": URL, "supported": {...}, "payment": {...},
   "verify": {"isValid": ..., ...}, "settle": {"success": ..., "transaction": ...} | null}

with every answer as parsed by the SDK's pydantic models (so a response that the SDK
would reject makes this script fail rather than print it).

Usage:
  X402_PRIVATE_KEY=0x... facilitator_interop.py --facilitator URL \\
      [--requirements JSON | --requirements @FILE]   (default: read JSON on stdin)
      [--resource URL]

Environment:
  X402_PRIVATE_KEY         the buyer's private key (hex)
  X402_SPEND_CONTROLS=off  disable the SDK's default spend controls

Run with the project's venv: tools/.venv/bin/python tools/python/facilitator_interop.py
Exit codes: 0 verified and settled, 1 the facilitator refused or the SDK failed,
2 bad input or usage.
"""

from __future__ import annotations

import base64
import json
import os
import sys

from sign_exact import SignError, sign_header


def _die(code: int, msg: str) -> None:
    sys.stderr.write(f"facilitator_interop: {msg}\n")
    sys.exit(code)


def _parse_args(argv: list[str]) -> dict[str, str]:
    opts: dict[str, str] = {}
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            sys.stdout.write(__doc__ or "")
            sys.exit(0)
        name, eq, value = arg.partition("=")
        if name not in ("--facilitator", "--requirements", "--resource"):
            _die(2, f"unknown argument: {arg} (try --help)")
        if not eq:
            value = next(it, None)
            if value is None:
                _die(2, f"{name} needs a value")
        opts[name[2:]] = value
    if "facilitator" not in opts:
        _die(2, "--facilitator URL is required (e.g. http://127.0.0.1:4020)")
    return opts


def _read_requirements(spec: str | None) -> dict:
    if spec is None:
        raw = sys.stdin.read()
        where = "stdin"
    elif spec.startswith("@"):
        try:
            with open(spec[1:], encoding="utf-8") as f:
                raw = f.read()
        except OSError as e:
            _die(2, f"cannot read {spec[1:]}: {e}")
        where = spec[1:]
    else:
        raw, where = spec, "--requirements"
    try:
        requirements = json.loads(raw)
    except json.JSONDecodeError as e:
        _die(2, f"{where} is not JSON: {e}")
    if not isinstance(requirements, dict) or "scheme" not in requirements:
        _die(2, f"{where} must be one v2 PaymentRequirements object (scheme, network, amount, ...)")
    return requirements


def _dump(model) -> dict:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def main(argv: list[str]) -> int:
    opts = _parse_args(argv)
    key = os.environ.get("X402_PRIVATE_KEY", "").strip()
    if not key:
        _die(2, "X402_PRIVATE_KEY is not set")
    requirements = _read_requirements(opts.get("requirements"))
    resource_url = opts.get("resource", "http://127.0.0.1/paid")

    try:
        from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync
        from x402.schemas import PaymentPayload, PaymentRequirements
    except ImportError as e:
        _die(2, f"x402 SDK not importable ({e}); run scripts/setup and use tools/.venv/bin/python")

    required = {
        "x402Version": 2,
        "error": "payment required",
        "resource": {"url": resource_url, "description": "interop", "mimeType": "application/json"},
        "accepts": [requirements],
    }
    spend_controls = os.environ.get("X402_SPEND_CONTROLS", "").lower() not in (
        "off",
        "0",
        "false",
        "no",
    )
    try:
        header = sign_header(required, key, spend_controls)
    except SignError as e:
        _die(e.code, str(e))
    payment = json.loads(base64.b64decode(header).decode("utf-8"))

    try:
        payload_model = PaymentPayload.model_validate(payment)
        requirements_model = PaymentRequirements.model_validate(requirements)
    except Exception as e:  # noqa: BLE001 - pydantic's message says what is wrong
        _die(2, f"the SDK does not accept these requirements: {e}")

    result: dict = {"facilitator": opts["facilitator"], "payment": payment}
    code = 0
    with HTTPFacilitatorClientSync(FacilitatorConfig(url=opts["facilitator"], timeout=60)) as client:
        try:
            result["supported"] = _dump(client.get_supported())
            verified = client.verify(payload_model, requirements_model)
            result["verify"] = _dump(verified)
            if verified.is_valid:
                settled = client.settle(payload_model, requirements_model)
                result["settle"] = _dump(settled)
                code = 0 if settled.success else 1
            else:
                result["settle"] = None
                code = 1
        except Exception as e:  # noqa: BLE001 - report what the SDK raised, with what we have
            result["error"] = f"{type(e).__name__}: {e}"
            sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
            _die(1, result["error"])
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
