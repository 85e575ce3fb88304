#!/usr/bin/env node
// A paid HTTP server built with the legacy x402 v1 TypeScript middleware
// (x402-express 1.2), settling through an HTTP facilitator, the way a seller that
// predates x402 v2 still runs it.
//
// Usage: node tools/node/server_v1.mjs --port N --facilitator URL --pay-to ADDR
//            --price ATOMIC [--network base-sepolia] [--asset ADDR]
// One paid route: GET /paid answers {"paid":true,"server":"x402-express"}.
// Prints one JSON line when listening: {"url", "port", "route", "network", "asset"}.
// The asset defaults to Base Sepolia's USDC (EIP-712 "USDC" / "2", 6 decimals),
// which agora's devnet installs at the same address.

import express from "express";
import { paymentMiddleware } from "x402-express";
import { listen, serverOptions } from "./server_common.mjs";

const opts = serverOptions("server_v1", "base-sepolia");

const app = express();
app.use(
  paymentMiddleware(
    opts.payTo,
    {
      "GET /paid": {
        price: {
          amount: opts.price,
          asset: { address: opts.asset, decimals: 6, eip712: { name: "USDC", version: "2" } },
        },
        network: opts.network,
        config: { description: "one paid answer", mimeType: "application/json" },
      },
    },
    { url: opts.facilitator },
  ),
);
app.get("/paid", (_req, res) => {
  res.json({ paid: true, server: "x402-express" });
});

listen(app, opts);
