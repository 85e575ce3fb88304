#!/usr/bin/env node
// A paid HTTP server built with the official x402 v2 TypeScript middleware
// (@x402/express + @x402/evm's exact server scheme), settling through an HTTP
// facilitator (@x402/core's HTTPFacilitatorClient), the way a seller's code does.
//
// Usage: node tools/node/server_v2.mjs --port N --facilitator URL --pay-to ADDR
//            --price ATOMIC [--network eip155:84532] [--asset ADDR]
// One paid route: GET /paid answers {"paid":true,"server":"@x402/express"}.
// Prints one JSON line when listening: {"url", "port", "route", "network", "asset"}.
// The asset defaults to Base Sepolia's USDC (EIP-712 "USDC" / "2"), which agora's
// devnet installs at the same address.

import express from "express";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { HTTPFacilitatorClient } from "@x402/core/server";

function usage(message) {
  process.stderr.write(`server_v2: ${message}\n`);
  process.exit(2);
}

const opts = { port: "0", network: "eip155:84532", asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e" };
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

const facilitator = new HTTPFacilitatorClient({ url: opts.facilitator });
const server = new x402ResourceServer(facilitator).register(opts.network, new ExactEvmScheme());

const app = express();
app.use(
  paymentMiddleware(
    {
      "GET /paid": {
        accepts: {
          scheme: "exact",
          price: { amount: opts.price, asset: opts.asset, extra: { name: "USDC", version: "2" } },
          network: opts.network,
          payTo: opts.payTo,
        },
        description: "one paid answer",
        mimeType: "application/json",
      },
    },
    server,
  ),
);
app.get("/paid", (_req, res) => {
  res.json({ paid: true, server: "@x402/express" });
});

const listener = app.listen(Number(opts.port), "127.0.0.1", () => {
  const { port } = listener.address();
  process.stdout.write(
    JSON.stringify({ url: `http://127.0.0.1:${port}`, port, route: "/paid", network: opts.network, asset: opts.asset }) +
      "\n",
  );
});
