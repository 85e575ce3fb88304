// What the two official TypeScript test servers (server_v1.mjs, server_v2.mjs) share:
// their command line and their ready line, so the Rust test drives both the same way
// and only the x402 middleware differs between them.

// The servers' flags: --port N --facilitator URL --pay-to ADDR --price ATOMIC
// [--network NAME] [--asset ADDR]; a bad command line exits 2 naming what is wrong.
export function serverOptions(name, defaultNetwork) {
  const usage = (message) => {
    process.stderr.write(`${name}: ${message}\n`);
    process.exit(2);
  };
  const opts = { port: "0", network: defaultNetwork, asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e" };
  const args = process.argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (!flag.startsWith("--")) usage(`unexpected argument ${flag}`);
    const value = args[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    opts[flag.slice(2).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = value;
  }
  for (const need of ["facilitator", "payTo", "price"]) {
    if (!opts[need]) usage(`--${need.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is required`);
  }
  return opts;
}

// Serves `app` on loopback and prints the one JSON ready line the test reads.
export function listen(app, opts) {
  const listener = app.listen(Number(opts.port), "127.0.0.1", () => {
    const { port } = listener.address();
    process.stdout.write(
      JSON.stringify({ url: `http://127.0.0.1:${port}`, port, route: "/paid", network: opts.network, asset: opts.asset }) +
        "\n",
    );
  });
}
