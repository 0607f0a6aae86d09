// How lt's Node test scripts find the pinned client packages: in .cache/node-client/
// (scripts/install-node-client), or $LT_NODE_CLIENT_DIR. Shared by session.mjs and
// expected.mjs.
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const clientDir = process.env.LT_NODE_CLIENT_DIR || path.resolve(here, "..", "..", ".cache", "node-client");
const nodeModules = path.join(clientDir, "node_modules");

export function die(code, msg) {
  process.stderr.write(`${path.basename(process.argv[1] ?? "node")}: ${msg}\n`);
  process.exit(code);
}

// Resolves "pkg/sub" in the client folder by the package's "exports" map ("import"
// condition), as Node would from a module inside that folder.
export async function importFromClient(spec) {
  const parts = spec.split("/");
  const n = spec.startsWith("@") ? 2 : 1;
  const pkg = parts.slice(0, n).join("/");
  const sub = parts.length > n ? "./" + parts.slice(n).join("/") : ".";
  const pkgDir = path.join(nodeModules, pkg);
  let meta;
  try {
    meta = JSON.parse(readFileSync(path.join(pkgDir, "package.json"), "utf8"));
  } catch {
    die(1, `${pkg} not found in ${nodeModules}; run scripts/install-node-client`);
  }
  let target = meta.exports ? (typeof meta.exports === "string" && sub === "." ? meta.exports : meta.exports[sub]) : null;
  if (target && typeof target === "object") target = target.import ?? target.node ?? target.default;
  if (!target) target = sub === "." ? meta.module || meta.main || "index.js" : sub;
  return import(pathToFileURL(path.join(pkgDir, target)).href);
}
