#!/usr/bin/env node
// Pays the gateway's HTML paywall from a real browser: Debian's chromium, headless,
// driven by playwright-core. It exists so the paywall's "Pay with wallet" script is
// tested the way a person uses it, against the page exactly as the gateway serves it
// (its Content-Security-Policy included).
//
// Usage:
//   node tools/node/browser_pay.mjs --url URL --screenshot PNG --rpc RPC --account ADDR
//   node tools/node/browser_pay.mjs --url URL --screenshot PNG --no-wallet
//
// With --rpc and --account the page gets an injected EIP-1193 provider
// (window.ethereum) whose eth_requestAccounts/eth_accounts/eth_chainId/
// eth_signTypedData_v4 go to the devnet's JSON-RPC, which signs with its unlocked dev
// account ADDR; the script clicks "Pay with wallet" and waits for the outcome. With
// --no-wallet the page has no provider and the script reads what it says instead.
// Environment: CHROMIUM (default /usr/bin/chromium).
// Prints one JSON line: {status, answer, tx, noWallet, csp, methods, consoleErrors}.
// Exit codes: 0 the page reached an outcome, 1 it did not (the JSON line says why),
// 2 bad usage.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

function usage(message) {
  process.stderr.write(`browser_pay: ${message}\n`);
  process.exit(2);
}

const opts = { wallet: true };
const args = process.argv.slice(2);
for (let i = 0; i < args.length; i++) {
  const flag = args[i];
  if (flag === "--no-wallet") opts.wallet = false;
  else if (["--url", "--screenshot", "--rpc", "--account"].includes(flag)) {
    const value = args[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    opts[flag.slice(2)] = value;
  } else usage(`unexpected argument ${flag}`);
}
if (!opts.url) usage("--url is required");
if (!opts.screenshot) usage("--screenshot is required");
if (opts.wallet && (!opts.rpc || !opts.account)) usage("--rpc and --account are required (or --no-wallet)");

// What the injected provider forwards to the devnet; anything else is refused with
// EIP-1193's "unsupported method" (4200), as a strict wallet would.
const FORWARDED = new Set(["eth_accounts", "eth_chainId", "eth_signTypedData_v4"]);
const methods = [];
let rpcId = 0;

async function rpc(method, params) {
  const response = await fetch(opts.rpc, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: ++rpcId, method, params }),
  });
  return response.json();
}

// The wallet's side of a page request: one account (the funded buyer), everything else
// answered by anvil.
async function walletRequest(method, params) {
  methods.push(method);
  if (method === "eth_requestAccounts" || method === "eth_accounts") {
    const listed = await rpc("eth_accounts", []);
    const mine = (listed.result ?? []).find((a) => a.toLowerCase() === opts.account.toLowerCase());
    if (!mine) return { error: { code: 4100, message: `anvil does not hold ${opts.account} unlocked` } };
    return { result: [mine] };
  }
  if (!FORWARDED.has(method)) return { error: { code: 4200, message: `unsupported method ${method}` } };
  const answer = await rpc(method, params);
  return answer.error ? { error: answer.error } : { result: answer.result };
}

// Runs in the page before its own script: a minimal EIP-1193 provider.
function installProvider() {
  window.ethereum = {
    isAgoraTestWallet: true,
    async request({ method, params }) {
      const answer = await window.__agoraWallet(method, params ?? []);
      if (answer.error) {
        const error = new Error(answer.error.message);
        error.code = answer.error.code;
        throw error;
      }
      return answer.result;
    },
    on() {},
    removeListener() {},
  };
}

const profile = mkdtempSync(join(tmpdir(), "agora-chromium-"));
const consoleErrors = [];
let context;
let outcome = { status: "", answer: "", tx: "", noWallet: "" };
let csp = null;
let failure = null;
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 900, height: 1000 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  if (opts.wallet) {
    await context.exposeFunction("__agoraWallet", walletRequest);
    await context.addInitScript(installProvider);
  }
  const response = await page.goto(opts.url, { waitUntil: "load" });
  if (response.status() !== 402) throw new Error(`the page answered ${response.status()}, not 402`);
  csp = response.headers()["content-security-policy"] ?? null;
  if (opts.wallet) {
    await page.getByRole("button", { name: "Pay with wallet" }).first().click({ timeout: 10_000 });
    // Done when the answer shows, or when the status stops saying "…" (a refusal).
    await page.waitForFunction(
      () => {
        const result = document.getElementById("x402-result");
        const status = document.getElementById("x402-status").textContent;
        return !result.hidden || (status !== "" && !status.endsWith("\u2026"));
      },
      null,
      { timeout: 60_000 },
    );
  } else {
    await page.locator("#x402-no-wallet").waitFor({ state: "visible", timeout: 10_000 });
  }
  outcome = await page.evaluate(() => ({
    status: document.getElementById("x402-status").textContent,
    answer: document.getElementById("x402-answer").textContent,
    tx: document.getElementById("x402-tx").textContent,
    noWallet: document.getElementById("x402-no-wallet").hidden
      ? ""
      : document.getElementById("x402-no-wallet").innerText,
  }));
  await page.screenshot({ path: opts.screenshot, fullPage: true });
} catch (e) {
  failure = String(e && e.stack ? e.stack : e);
} finally {
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify({ ...outcome, csp, methods, consoleErrors, error: failure }) + "\n");
process.exit(failure ? 1 : 0);
