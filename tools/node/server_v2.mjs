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
import { listen, serverOptions } from "./server_common.mjs";

const opts = serverOptions("server_v2", "eip155:84532");

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

listen(app, opts);
