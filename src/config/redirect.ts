/**
 * `extensions.redirect` (Kagami's, not zot's): blob requests sent to a copy near the client, chosen
 * by the client's network, as registry.k8s.io's archeio does; and the redirector mode, a Kagami that
 * stores nothing and sends every request elsewhere.
 */
import { layoutProblem } from "../redirect/blob-copies.ts";
import type { NetworkFile } from "../redirect/networks.ts";
import { parseCidr } from "../redirect/networks.ts";
import type { ConfigProblem } from "./config.ts";
import { parseDuration } from "./duration.ts";
import { isObject, type Json } from "./json.ts";

const duration = {
  type: "string",
  format: "go-duration",
  description: 'a Go duration such as "2s" or "1h"',
};
const text = { type: "string", minLength: 1 };
const texts = { type: "array", items: text };
const copyFields = { name: text, baseUrl: text, layout: text, artifactsBaseUrl: text };
const networkFile = {
  type: "object",
  properties: {
    path: text,
    format: { enum: ["aws", "gcp", "plain"] },
    regions: texts,
    scopes: texts,
  },
  required: ["path", "format"],
};
const upstream = {
  type: "object",
  properties: { url: text, pathPrefix: { type: "string" } },
  required: ["url"],
};

export const redirectSchema = {
  type: "object",
  properties: {
    mode: { enum: ["mirror", "redirector"] },
    clientAddress: {
      type: "object",
      properties: {
        trustedProxies: texts,
        trustedHops: { type: "integer", minimum: 1, maximum: 32, description: "an integer from 1 to 32" },
      },
    },
    rules: {
      type: "array",
      items: {
        type: "object",
        properties: { ...copyFields, networks: texts, networkFiles: { type: "array", items: networkFile } },
        required: ["name", "baseUrl"],
      },
    },
    default: { type: "object", properties: copyFields, required: ["baseUrl"] },
    check: { type: "object", properties: { timeout: duration, cacheTTL: duration } },
    upstream,
    signatureUpstream: upstream,
    pages: { type: "object", additionalProperties: { type: "string", minLength: 1 } },
  },
} as const;

export interface BlobCopyConfig {
  name: string;
  /** `http(s)://host[/path]`, never with credentials in it. */
  baseUrl: string;
  /** A preset (`archeio`, `registry`) or a template with `{digest}` / `{encoded}`. */
  layout: string;
  /** Where this copy keeps release files (extensions.artifacts), `<artifactsBaseUrl>/<path>`; none: not redirected. */
  artifactsBaseUrl?: string;
}

export interface RedirectRuleConfig extends BlobCopyConfig {
  networks: string[];
  networkFiles: NetworkFile[];
}

export interface UpstreamTarget {
  /** Scheme and host, no trailing slash. */
  url: string;
  /** Inserted after `/v2/` (archeio's UpstreamRegistryPath), no slashes at either end. */
  pathPrefix: string;
}

export interface RedirectConfig {
  mode: "mirror" | "redirector";
  trustedProxies: string[];
  trustedHops: number;
  rules: RedirectRuleConfig[];
  default?: BlobCopyConfig;
  checkTimeoutMs: number;
  checkCacheTtlMs: number;
  upstream?: UpstreamTarget;
  signatureUpstream?: UpstreamTarget;
  /** Exact request path → URL it redirects to (archeio: `/` and `/privacy`). */
  pages: Record<string, string>;
}

/** Why a URL cannot be a redirect target, or undefined. Credentials in it would reach every client. */
function urlProblem(value: string): string | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return `${JSON.stringify(value)} is not a URL; write it with its scheme, e.g. https://bucket.example.com`;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    return `${JSON.stringify(value)} must be http or https`;
  if (u.username || u.password)
    return "must not contain credentials: every client it is sent to would receive them";
  if (u.search || u.hash) return `${JSON.stringify(value)} must not have a query or fragment`;
  return undefined;
}

/** What the schema cannot say: CIDRs, URLs, layouts, and the settings a redirector cannot honour. */
export function redirectProblems(tree: Json): ConfigProblem[] {
  const ext = isObject(tree.extensions) ? tree.extensions : {};
  const r = ext.redirect;
  if (!isObject(r)) return [];
  const out: ConfigProblem[] = [];
  const at = "extensions.redirect";
  const cidrs = (list: unknown, path: string) => {
    for (const [i, c] of (Array.isArray(list) ? list : []).entries()) {
      if (typeof c === "string" && !parseCidr(c))
        out.push({
          path: `${path}[${i}]`,
          message: `${JSON.stringify(c)} is not a CIDR such as 10.0.0.0/8 or 2001:db8::/32`,
        });
    }
  };
  const url = (v: unknown, path: string) => {
    const why = typeof v === "string" ? urlProblem(v) : undefined;
    if (why) out.push({ path, message: why });
  };
  const copy = (c: Json, path: string) => {
    url(c.baseUrl, `${path}.baseUrl`);
    if (c.artifactsBaseUrl !== undefined) url(c.artifactsBaseUrl, `${path}.artifactsBaseUrl`);
    const why = typeof c.layout === "string" ? layoutProblem(c.layout) : undefined;
    if (why) out.push({ path: `${path}.layout`, message: why });
  };
  if (isObject(r.clientAddress)) cidrs(r.clientAddress.trustedProxies, `${at}.clientAddress.trustedProxies`);
  for (const [i, rule] of (Array.isArray(r.rules) ? r.rules : []).entries()) {
    if (!isObject(rule)) continue;
    const path = `${at}.rules[${i}]`;
    copy(rule, path);
    cidrs(rule.networks, `${path}.networks`);
    const files = Array.isArray(rule.networkFiles) ? rule.networkFiles : [];
    if ((Array.isArray(rule.networks) ? rule.networks.length : 0) + files.length === 0)
      out.push({ path, message: "names no client networks: give networks or networkFiles" });
    for (const [j, f] of files.entries()) {
      if (!isObject(f)) continue;
      if (f.regions !== undefined && f.format !== "aws")
        out.push({ path: `${path}.networkFiles[${j}].regions`, message: "only an aws file has regions" });
      if (f.scopes !== undefined && f.format !== "gcp")
        out.push({ path: `${path}.networkFiles[${j}].scopes`, message: "only a gcp file has scopes" });
    }
  }
  if (isObject(r.default)) copy(r.default, `${at}.default`);
  for (const key of ["upstream", "signatureUpstream"]) {
    const u = r[key];
    if (isObject(u)) url(u.url, `${at}.${key}.url`);
  }
  for (const [page, target] of Object.entries(isObject(r.pages) ? r.pages : {})) {
    if (!page.startsWith("/") || page === "/v2" || page.startsWith("/v2/"))
      out.push({ path: `${at}.pages`, message: `${JSON.stringify(page)} must be a path outside /v2/` });
    url(target, `${at}.pages.${page}`);
  }
  if (r.mode === "redirector") {
    if (!isObject(r.upstream))
      out.push({ path: `${at}.upstream`, message: "a redirector needs the registry it sends requests to" });
    const http = isObject(tree.http) ? tree.http : {};
    // A redirector answers before any account is looked at: access rules would be silently void.
    for (const key of ["auth", "accessControl"]) {
      if (http[key] !== undefined)
        out.push({
          path: `http.${key}`,
          message:
            "a redirector (extensions.redirect.mode redirector) does not enforce access control; " +
            "protect the upstream instead, or run in mirror mode",
        });
    }
    if (isObject(ext.sync) && ext.sync.enable !== false)
      out.push({ path: "extensions.sync", message: "a redirector stores nothing, so it cannot sync" });
    // Accepted before but never served: a scrape config would find only 404s.
    if (isObject(ext.metrics) && ext.metrics.enable === true)
      out.push({
        path: "extensions.metrics",
        message: "a redirector serves no metrics; its access log records every redirect",
      });
  } else {
    for (const key of ["upstream", "signatureUpstream", "pages"]) {
      if (r[key] !== undefined)
        out.push({ path: `${at}.${key}`, message: "is used only in redirector mode (mode: redirector)" });
    }
  }
  return out;
}

interface RawCopy {
  name?: string;
  baseUrl: string;
  layout?: string;
  artifactsBaseUrl?: string;
}

interface RawRedirect {
  mode?: "mirror" | "redirector";
  clientAddress?: { trustedProxies?: string[]; trustedHops?: number };
  rules?: (RawCopy & { name: string; networks?: string[]; networkFiles?: NetworkFile[] })[];
  default?: RawCopy;
  check?: { timeout?: string; cacheTTL?: string };
  upstream?: { url: string; pathPrefix?: string };
  signatureUpstream?: { url: string; pathPrefix?: string };
  pages?: Record<string, string>;
}

const trimSlashes = (s: string) => s.replace(/^\/+|\/+$/g, "");

function target(u: { url: string; pathPrefix?: string }, fallbackPrefix = ""): UpstreamTarget {
  return { url: u.url.replace(/\/+$/, ""), pathPrefix: trimSlashes(u.pathPrefix ?? fallbackPrefix) };
}

/** The typed section, from a tree that passed the schema and redirectProblems. */
export function normalizeRedirect(raw: RawRedirect, resolvePath: (p: string) => string): RedirectConfig {
  const copy = (c: RawCopy, name: string): BlobCopyConfig => ({
    name: c.name ?? name,
    baseUrl: c.baseUrl.replace(/\/+$/, ""),
    layout: c.layout ?? "archeio",
    ...(c.artifactsBaseUrl ? { artifactsBaseUrl: c.artifactsBaseUrl.replace(/\/+$/, "") } : {}),
  });
  const out: RedirectConfig = {
    mode: raw.mode ?? "mirror",
    trustedProxies: raw.clientAddress?.trustedProxies ?? [],
    trustedHops: raw.clientAddress?.trustedHops ?? 1,
    rules: (raw.rules ?? []).map((r) => ({
      ...copy(r, r.name),
      networks: r.networks ?? [],
      networkFiles: (r.networkFiles ?? []).map((f) => ({ ...f, path: resolvePath(f.path) })),
    })),
    checkTimeoutMs: raw.check?.timeout ? parseDuration(raw.check.timeout)! : 2_000,
    checkCacheTtlMs: raw.check?.cacheTTL ? parseDuration(raw.check.cacheTTL)! : 3_600_000,
    pages: raw.pages ?? {},
  };
  if (raw.default) out.default = copy(raw.default, "default");
  if (raw.upstream) out.upstream = target(raw.upstream);
  if (raw.signatureUpstream)
    out.signatureUpstream = target(raw.signatureUpstream, raw.upstream?.pathPrefix ?? "");
  return out;
}
