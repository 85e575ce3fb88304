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

function usage(message) {
  process.stderr.write(`server_v1: ${message}\n`);
  process.exit(2);
}

const opts = { port: "0", network: "base-sepolia", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e" };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const name = args[i];
  if (!name.startsWith("--")) usage(`unexpected argument ${name}`);
  const value = args[++i];
  if (value === undefined) usage(`${name} needs a value`);
  opts[name.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = value;
}
for (const need of ["facilitator", "payTo", "price"]) {
  if (!opts[need]) usage(`--${need.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is required`);
}

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

const listener = app.listen(Number(opts.port), "127.0.0.1", () => {
  const { port } = listener.address();
  process.stdout.write(
    JSON.stringify({ url: `http://127.0.0.1:${port}`, port, route: "/paid", network: opts.network, asset: opts.asset }) +
      "\n",
  );
});
