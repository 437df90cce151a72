/**
 * Checks zot runs across the rest of a config before it starts (its storage, HTTP and access
 * validation): what zot refuses to start with is refused here too, with the field named.
 */
import { resolve, sep } from "node:path";
import type { ConfigProblem } from "./config.ts";
import { isObject, type Json } from "./json.ts";
import { globProblem } from "./sync-rules.ts";

const reservedAccessKeys = new Set(["groups", "repositories", "adminPolicy", "metrics"]);

/** Repository patterns of an accessControl section, zot's current and older forms, with their paths. */
function accessPatterns(acl: Json): [string, string, Json][] {
  const out: [string, string, Json][] = [];
  const repos = isObject(acl.repositories) ? acl.repositories : {};
  for (const [p, v] of Object.entries(repos))
    if (isObject(v)) out.push([p, `http.accessControl.repositories.${p}`, v]);
  for (const [p, v] of Object.entries(acl)) {
    if (!reservedAccessKeys.has(p) && isObject(v)) out.push([p, `http.accessControl.${p}`, v]);
  }
  return out;
}

function accessProblems(http: Json, out: ConfigProblem[]): void {
  const acl = http.accessControl;
  if (!isObject(acl)) return;
  const patterns = accessPatterns(acl);
  for (const [pattern, path] of patterns) {
    const bad = globProblem(pattern);
    if (bad) out.push({ path, message: `the repository pattern ${bad}, as zot refuses it` });
  }
  const auth = isObject(http.auth) ? http.auth : {};
  if (isObject(auth.htpasswd) && typeof auth.htpasswd.path === "string" && auth.htpasswd.path !== "") return;
  // Without accounts nobody signs in, so user and default policies could never apply.
  const needsAccounts =
    isObject(acl.adminPolicy) ||
    patterns.some(
      ([, , v]) => (Array.isArray(v.policies) && v.policies.length > 0) || v.defaultPolicy !== undefined,
    );
  if (needsAccounts) {
    out.push({
      path: "http.accessControl",
      message:
        "user, default and admin policies need accounts (http.auth.htpasswd); without them only anonymousPolicy applies, as zot requires",
    });
  }
}

function storageProblems(storage: Json, out: ConfigProblem[]): void {
  if (!isObject(storage.subPaths)) return;
  const roots: [string, string][] = [];
  if (typeof storage.rootDirectory === "string")
    roots.push(["storage.rootDirectory", resolve(storage.rootDirectory)]);
  for (const [prefix, sub] of Object.entries(storage.subPaths)) {
    if (isObject(sub) && typeof sub.rootDirectory === "string")
      roots.push([`storage.subPaths.${prefix}.rootDirectory`, resolve(sub.rootDirectory)]);
  }
  for (let i = 0; i < roots.length; i++) {
    for (let j = 0; j < i; j++) {
      const [pathA, a] = roots[j]!;
      const [pathB, b] = roots[i]!;
      const inside = (x: string, y: string) => x === y || x.startsWith(y.endsWith(sep) ? y : `${y}${sep}`);
      if (inside(a, b) || inside(b, a)) {
        out.push({
          path: pathB,
          message: `${b} ${a === b ? "is the same directory as" : "overlaps"} ${pathA} (${a}); each store needs a root of its own, as zot requires`,
        });
      }
    }
  }
}

export function zotRuleProblems(tree: Json): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  if (isObject(tree.http)) accessProblems(tree.http, out);
  if (isObject(tree.storage)) storageProblems(tree.storage, out);
  return out;
}
