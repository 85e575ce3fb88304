#!/usr/bin/env node
// A stand-in for cloudflared, for tests only: the Cloudflare edge cannot be reached
// here, so this speaks the local interface agora relies on and nothing else. It takes
// `tunnel --no-autoupdate --metrics HOST:PORT --url URL [run]`, serves /quicktunnel
// ({"hostname": "<random>.trycloudflare.com"}) and /ready (200 once "connected") on the
// metrics address, and prints the quick-tunnel banner on stderr like cloudflared does.
// STANDIN_NO_QUICKTUNNEL=1 answers /quicktunnel with an empty hostname so the banner
// fallback is exercised. It never forwards traffic: the public name does not resolve.
import { createServer } from "node:http";
import { randomBytes } from "node:crypto";

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
if (args[0] !== "tunnel" || !args.includes("--no-autoupdate")) {
  console.error(`standin: unexpected command line: ${args.join(" ")}`);
  process.exit(2);
}
const metrics = flag("--metrics");
const url = flag("--url");
if (!metrics || !url) {
  console.error("standin: --metrics and --url are required");
  process.exit(2);
}
const named = args.includes("run");
if (named && !process.env.TUNNEL_TOKEN) {
  console.error("standin: a named tunnel needs TUNNEL_TOKEN");
  process.exit(2);
}
const words = () => randomBytes(4).toString("hex");
const hostname = `${words()}-${words()}-standin.trycloudflare.com`;
const [host, port] = [metrics.slice(0, metrics.lastIndexOf(":")), Number(metrics.slice(metrics.lastIndexOf(":") + 1))];
let ready = false;

createServer((req, res) => {
  res.setHeader("content-type", "application/json");
  if (req.url === "/quicktunnel") {
    const shown = named || process.env.STANDIN_NO_QUICKTUNNEL ? "" : hostname;
    res.end(JSON.stringify({ hostname: shown }));
  } else if (req.url === "/ready") {
    res.statusCode = ready ? 200 : 503;
    res.end(JSON.stringify({ status: res.statusCode, readyConnections: ready ? 1 : 0 }));
  } else {
    res.statusCode = 404;
    res.end("{}");
  }
}).listen(port, host, () => {
  const at = new Date().toISOString();
  console.error(`${at} INF Starting metrics server on ${metrics}/metrics`);
  console.error(`${at} ERR (illustration) failed to reach https://api.trycloudflare.com/tunnel once`);
  if (!named) {
    console.error(`${at} INF +--------------------------------------------------------------------------------------------+`);
    console.error(`${at} INF |  Your quick Tunnel has been created! Visit it at (it may take some time to be reachable):  |`);
    console.error(`${at} INF |  https://${hostname}                                      |`);
    console.error(`${at} INF +--------------------------------------------------------------------------------------------+`);
  }
  setTimeout(() => {
    ready = true;
    console.error(`${new Date().toISOString()} INF Registered tunnel connection connIndex=0 origin=${url}`);
  }, 150);
});
