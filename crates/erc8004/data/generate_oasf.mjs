#!/usr/bin/env node
// Builds oasf-v0.8.0.json, the flat OASF v0.8.0 skill and domain table that the
// erc8004 crate embeds, from the agntcy/oasf schema tree at tag v0.8.0.
//
// Usage: node generate_oasf.mjs <oasf checkout or its schema/ dir> [output.json]
//
// Get the input with, for example:
//   git clone https://github.com/agntcy/oasf && git -C oasf checkout v0.8.0
//   node crates/erc8004/data/generate_oasf.mjs oasf
// The output defaults to oasf-v0.8.0.json next to this script.
//
// Rules (the OASF server's, see server/lib/schema/cache.ex and utils.ex at v0.8.0):
// - one JSON file per class under schema/skills/** and schema/domains/**; a class
//   names its parent in `extends`; category roots extend base_skill/base_domain and
//   take their uid from schema/skill_categories.json / schema/domain_categories.json;
// - name = the extends chain joined with "/" from the category down to the class;
// - id = parent id * 100 + local uid, the category root's id being the category uid.
// Plain Node, no dependencies.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const VERSION = "0.8.0";
const TAG = `v${VERSION}`;

const KINDS = [
  { key: "skills", dir: "skills", base: "base_skill", categories: "skill_categories.json" },
  { key: "domains", dir: "domains", base: "base_domain", categories: "domain_categories.json" },
];

function fail(message) {
  console.error(`generate_oasf: ${message}`);
  process.exit(1);
}

function readJson(file) {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    return fail(`cannot read ${file}: ${e.message}`);
  }
}

function jsonFiles(dir) {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => {
      const full = path.join(dir, e.name);
      if (e.isDirectory()) return jsonFiles(full);
      return e.isFile() && e.name.endsWith(".json") ? [full] : [];
    })
    .sort();
}

function schemaDir(input) {
  for (const candidate of [path.join(input, "schema"), input]) {
    if (fs.existsSync(path.join(candidate, "version.json"))) return candidate;
  }
  return fail(`${input} holds neither schema/version.json nor version.json; pass an oasf checkout at ${TAG}`);
}

function buildKind(schema, kind) {
  const categories = readJson(path.join(schema, kind.categories)).attributes;
  const classes = new Map();
  for (const file of jsonFiles(path.join(schema, kind.dir))) {
    const cls = readJson(file);
    if (typeof cls.name !== "string" || cls.name.length === 0) fail(`${file} has no name`);
    if (cls.name.includes("/")) fail(`${file}: name ${cls.name} contains "/"`);
    if (classes.has(cls.name)) fail(`${kind.dir}: class ${cls.name} is defined twice`);
    classes.set(cls.name, { ...cls, file });
  }
  if (!classes.has(kind.base)) fail(`${kind.dir}: ${kind.base} is missing`);

  const resolved = new Map();
  function resolve(name, seen) {
    if (resolved.has(name)) return resolved.get(name);
    if (seen.has(name)) fail(`${kind.dir}: extends cycle through ${name}`);
    seen.add(name);
    const cls = classes.get(name) ?? fail(`${kind.dir}: ${name} is extended but not defined`);
    let entry;
    if (cls.extends === kind.base) {
      const category = categories[name];
      if (cls.category !== name || !category) {
        fail(`${cls.file}: a root class must be a category in ${kind.categories}`);
      }
      entry = { name, id: category.uid, caption: cls.caption ?? category.caption };
    } else {
      if (!Number.isInteger(cls.uid)) fail(`${cls.file}: non-root class without an integer uid`);
      const parent = resolve(cls.extends, seen);
      entry = { name: `${parent.name}/${name}`, id: parent.id * 100 + cls.uid, caption: cls.caption };
    }
    if (typeof entry.caption !== "string") fail(`${cls.file}: no caption`);
    resolved.set(name, entry);
    return entry;
  }

  const entries = [...classes.keys()]
    .filter((name) => name !== kind.base)
    .map((name) => resolve(name, new Set()));
  for (const name of Object.keys(categories)) {
    if (!resolved.has(name)) fail(`${kind.categories}: category ${name} has no class file`);
  }
  const ids = new Set(entries.map((e) => e.id));
  if (ids.size !== entries.length) fail(`${kind.dir}: two classes share an id`);
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function render(doc) {
  const lines = ["{"];
  lines.push(`  "attribution": ${JSON.stringify(doc.attribution, null, 2).replace(/\n/g, "\n  ")},`);
  lines.push(`  "version": ${JSON.stringify(doc.version)},`);
  KINDS.forEach((kind, i) => {
    const rows = doc[kind.key].map((e) => `    ${JSON.stringify(e)}`);
    lines.push(`  "${kind.key}": [`, rows.join(",\n"), `  ]${i + 1 < KINDS.length ? "," : ""}`);
  });
  lines.push("}", "");
  return lines.join("\n");
}

function main() {
  const [input, output] = process.argv.slice(2);
  if (!input) fail("usage: node generate_oasf.mjs <oasf checkout or its schema/ dir> [output.json]");
  const schema = schemaDir(input);
  const version = readJson(path.join(schema, "version.json")).version;
  if (version !== VERSION) fail(`the schema is version ${version}; check out tag ${TAG}`);
  const notice = fs.readFileSync(path.join(schema, "NOTICE"), "utf8").trim();

  const doc = {
    attribution: {
      source: "https://github.com/agntcy/oasf",
      tag: TAG,
      path: "schema/",
      license: "Apache-2.0",
      notice,
      generator: "crates/erc8004/data/generate_oasf.mjs",
      note: "Derived data: only name (the extends chain joined with /), id and caption are kept.",
    },
    version,
  };
  for (const kind of KINDS) doc[kind.key] = buildKind(schema, kind);

  const here = path.dirname(fileURLToPath(import.meta.url));
  const target = output ?? path.join(here, `oasf-v${VERSION}.json`);
  fs.writeFileSync(target, render(doc));
  console.log(`wrote ${doc.skills.length} skills and ${doc.domains.length} domains to ${path.basename(target)}`);
}

main();
