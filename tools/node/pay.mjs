#!/usr/bin/env node
// Buy one call from an x402-gated URL with the official TypeScript client
// (@x402/fetch + @x402/evm + viem), the way a buyer's code does.
//
// Usage: node tools/node/pay.mjs URL [--method GET|POST] [--data TEXT] [--legacy-v1]
// The buyer's private key comes from X402_PRIVATE_KEY. Prints one JSON line:
// {"status", "body", "paymentResponse"}.
//
// --legacy-v1 plays a client that predates x402 v2: the fetch it wraps hides the
// PAYMENT-REQUIRED header of 402 answers, so the SDK reads the body and takes its v1
// path (X-PAYMENT, v1 payload, network names).
// Exit codes: 0 a response was received (any status), 1 the SDK failed, 2 bad usage.

import { wrapFetchWithPayment, x402Client, decodePaymentResponseHeader } from "@x402/fetch";
import { registerExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";

function usage(message) {
  process.stderr.write(`pay: ${message}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let url;
let method = "GET";
let data;
let legacy = false;
for (let i = 0; i < args.length; i++) {
  const arg = args[i];
  if (arg === "--method") method = (args[++i] ?? "GET").toUpperCase();
  else if (arg === "--data") data = args[++i];
  else if (arg === "--legacy-v1") legacy = true;
  else if (url === undefined) url = arg;
  else usage(`unexpected argument ${arg}`);
}
if (!url) usage("give the URL to buy from");
const key = (process.env.X402_PRIVATE_KEY ?? "").trim();
if (!key) usage("X402_PRIVATE_KEY is not set");

const client = new x402Client();
registerExactEvmScheme(client, { signer: privateKeyToAccount(key.startsWith("0x") ? key : `0x${key}`) });

async function transport(input, init) {
  const response = await fetch(input, init);
  if (!legacy || response.status !== 402) return response;
  const headers = new Headers(response.headers);
  headers.delete("payment-required");
  return new Response(await response.arrayBuffer(), { status: response.status, headers });
}

try {
  const pay = wrapFetchWithPayment(transport, client);
  const response = await pay(url, { method, body: data });
  const body = await response.text();
  const receiptHeader =
    response.headers.get("PAYMENT-RESPONSE") ?? response.headers.get("X-PAYMENT-RESPONSE");
  const paymentResponse = receiptHeader ? decodePaymentResponseHeader(receiptHeader) : null;
  process.stdout.write(
    JSON.stringify({ status: response.status, body, paymentResponse }) + "\n",
  );
} catch (error) {
  process.stderr.write(`pay: ${error?.stack ?? error}\n`);
  process.exit(1);
}
