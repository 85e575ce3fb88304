#!/usr/bin/env node
// Reproducible build of agora's devnet contracts with solc-js (no network).
//
//   node contracts/build.mjs [--out DIR]     (default DIR: contracts/out)
//
// Compiles contracts/src/*.sol with the solc-js and OpenZeppelin versions pinned
// in tools/package.json (install them with scripts/setup) and writes one
// artifact per contract listed in CONTRACTS:
//   DIR/<Name>.json = {"contractName","solcVersion","abi","bytecode","deployedBytecode"}
// pretty-printed with a trailing newline. Settings are fixed (optimizer on, 200
// runs, evmVersion cancun, no metadata hash), so the output is byte-for-byte
// reproducible and can be compared with the committed contracts/out.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const SOLC_VERSION = "0.8.37";
const CONTRACTS = [
  { file: "LocalUSDC.sol", name: "LocalUSDC" },
  { file: "IdentityRegistry.sol", name: "IdentityRegistry" },
  { file: "Multicall3.sol", name: "Multicall3" },
];

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "..");
const srcDir = path.join(here, "src");
const toolsDir = path.join(repoRoot, "tools");
const nodeModules = path.join(toolsDir, "node_modules");

function fail(msg) {
  process.stderr.write(`contracts/build.mjs: ${msg}\n`);
  process.exit(1);
}

function parseArgs(argv) {
  let out = path.join(here, "out");
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--out") {
      if (i + 1 >= argv.length) fail("--out needs a directory");
      out = path.resolve(argv[++i]);
    } else if (a.startsWith("--out=")) {
      out = path.resolve(a.slice("--out=".length));
    } else if (a === "-h" || a === "--help") {
      process.stdout.write("usage: node contracts/build.mjs [--out DIR]\n");
      process.exit(0);
    } else {
      fail(`unknown argument: ${a}`);
    }
  }
  return { out };
}

function loadSolc() {
  const req = createRequire(path.join(toolsDir, "package.json"));
  let solc;
  try {
    solc = req("solc");
  } catch (e) {
    fail(`cannot load solc-js from ${nodeModules} (${e.code || e.message}); run scripts/setup first`);
  }
  const full = solc.version();
  if (!full.startsWith(`${SOLC_VERSION}+`)) {
    fail(`solc-js ${full} found, ${SOLC_VERSION} required; run scripts/setup`);
  }
  return solc;
}

// Source unit names are repo-relative so that they (and thus the output) do not
// depend on where the repository is checked out.
function readSources() {
  const sources = {};
  const files = fs
    .readdirSync(srcDir)
    .filter((f) => f.endsWith(".sol"))
    .sort();
  for (const f of files) {
    sources[`contracts/src/${f}`] = { content: fs.readFileSync(path.join(srcDir, f), "utf8") };
  }
  for (const c of CONTRACTS) {
    if (!sources[`contracts/src/${c.file}`]) fail(`missing source contracts/src/${c.file}`);
  }
  return sources;
}

function findImports(unitName) {
  let file;
  if (unitName.startsWith("@openzeppelin/")) {
    file = path.join(nodeModules, unitName);
  } else if (unitName.startsWith("contracts/src/")) {
    file = path.join(repoRoot, unitName);
  } else {
    return { error: `import not allowed: ${unitName} (only @openzeppelin/* and contracts/src/*)` };
  }
  // Refuse anything that escapes the allowed roots (e.g. "../").
  const rel = path.relative(repoRoot, path.resolve(file));
  if (rel.startsWith("..") || path.isAbsolute(rel)) return { error: `import escapes repository: ${unitName}` };
  try {
    return { contents: fs.readFileSync(file, "utf8") };
  } catch (e) {
    return { error: `cannot read ${unitName} (${e.code || e.message}); run scripts/setup` };
  }
}

function main() {
  const { out } = parseArgs(process.argv.slice(2));
  const solc = loadSolc();

  const sources = readSources();
  const outputSelection = {};
  for (const unit of Object.keys(sources)) {
    outputSelection[unit] = { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] };
  }
  const input = {
    language: "Solidity",
    sources,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
      metadata: { bytecodeHash: "none" },
      outputSelection,
    },
  };

  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
  const diagnostics = output.errors || [];
  const errors = diagnostics.filter((d) => d.severity === "error");
  for (const d of diagnostics.filter((d) => d.severity !== "error")) {
    process.stderr.write(d.formattedMessage || `${d.severity}: ${d.message}\n`);
  }
  if (errors.length > 0) {
    for (const d of errors) process.stderr.write(d.formattedMessage || `error: ${d.message}\n`);
    fail(`compilation failed with ${errors.length} error(s)`);
  }

  fs.mkdirSync(out, { recursive: true });
  for (const c of CONTRACTS) {
    const compiled = output.contracts?.[`contracts/src/${c.file}`]?.[c.name];
    if (!compiled) fail(`contract ${c.name} not found in contracts/src/${c.file}`);
    const bytecode = compiled.evm.bytecode.object;
    const deployed = compiled.evm.deployedBytecode.object;
    if (!bytecode || !deployed) fail(`contract ${c.name} produced no bytecode (is it abstract?)`);
    const artifact = {
      contractName: c.name,
      solcVersion: solc.version(),
      abi: compiled.abi,
      bytecode: `0x${bytecode}`,
      deployedBytecode: `0x${deployed}`,
    };
    fs.writeFileSync(path.join(out, `${c.name}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
  }
  process.stdout.write(`compiled ${CONTRACTS.map((c) => c.name).join(", ")} -> ${path.relative(process.cwd(), out) || "."}\n`);
}

main();
