#!/usr/bin/env python3
"""A paid HTTP server built with the official x402 Python SDK's Flask middleware.

``x402.http.middleware.flask.payment_middleware`` over an ``x402ResourceServerSync``
with the SDK's exact EVM server scheme, settling through an HTTP facilitator
(``x402.http.HTTPFacilitatorClientSync``), the way a seller's code does.

Usage:
  server.py --facilitator URL --pay-to ADDR --price ATOMIC
            [--port 0] [--network eip155:84532] [--asset ADDR]

One paid route: GET /paid answers {"paid": true, "server": "x402 flask"}.
Prints one JSON line when listening: {"url", "port", "route", "network", "asset"}.
The asset defaults to Base Sepolia's USDC (EIP-712 "USDC" / "2"), which agora's
devnet installs at the same address.

Run with the project's venv: tools/.venv/bin/python tools/python/server.py
Exit codes: 2 bad usage.
"""

from __future__ import annotations

import json
import sys

from flask import Flask, jsonify
from werkzeug.serving import make_server

from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync, PaymentOption, RouteConfig
from x402.http.middleware.flask import payment_middleware
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.schemas import AssetAmount
from x402.server import x402ResourceServerSync

USDC = "0x036CbD53842c5426634e7929541eC2318f3dCF7e"


def _die(msg: str) -> None:
    sys.stderr.write(f"server: {msg}\n")
    sys.exit(2)


def _parse_args(argv: list[str]) -> dict[str, str]:
    opts = {"port": "0", "network": "eip155:84532", "asset": USDC}
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            sys.stdout.write(__doc__ or "")
            sys.exit(0)
        if arg not in ("--port", "--facilitator", "--pay-to", "--price", "--network", "--asset"):
            _die(f"unknown argument: {arg} (try --help)")
        value = next(it, None)
        if value is None:
            _die(f"{arg} needs a value")
        opts[arg[2:]] = value
    for need in ("facilitator", "pay-to", "price"):
        if need not in opts:
            _die(f"--{need} is required")
    return opts


def main() -> None:
    opts = _parse_args(sys.argv[1:])
    facilitator = HTTPFacilitatorClientSync(FacilitatorConfig(url=opts["facilitator"]))
    server = x402ResourceServerSync(facilitator)
    server.register(opts["network"], ExactEvmServerScheme())

    app = Flask(__name__)
    routes = {
        "GET /paid": RouteConfig(
            accepts=PaymentOption(
                scheme="exact",
                pay_to=opts["pay-to"],
                price=AssetAmount(
                    amount=opts["price"],
                    asset=opts["asset"],
                    extra={"name": "USDC", "version": "2"},
                ),
                network=opts["network"],
            ),
            description="one paid answer",
            mime_type="application/json",
        )
    }
    payment_middleware(app, routes, server)

    @app.get("/paid")
    def paid():  # type: ignore[no-untyped-def]
        return jsonify({"paid": True, "server": "x402 flask"})

    http = make_server("127.0.0.1", int(opts["port"]), app, threaded=True)
    port = http.server_port
    ready = {
        "url": f"http://127.0.0.1:{port}",
        "port": port,
        "route": "/paid",
        "network": opts["network"],
        "asset": opts["asset"],
    }
    sys.stdout.write(json.dumps(ready) + "\n")
    sys.stdout.flush()
    http.serve_forever()


if __name__ == "__main__":
    main()
