/**
 * `extensions.artifacts` (Kagami's own): the release-file service beside the registry. The checks
 * here are the ones a schema cannot express: where it is served, that it cannot shadow the
 * registry's endpoints or its storage, and that serving files to anyone is what was meant.
 */
import { resolve, sep } from "node:path";
import type { ConfigProblem } from "./config.ts";
import { parseDuration } from "./duration.ts";
import { isObject, type Json } from "./json.ts";

export interface ArtifactsConfig {
  rootDirectory: string;
  /** On the registry's listener below this path, e.g. "/artifacts"; unset: not there. */
  pathPrefix?: string;
  /** A listener of its own, serving from "/". */
  listener?: { address: string; port: number };
  listing: boolean;
  /** Apply extensions.redirect rules to file requests. */
  redirect: boolean;
  upstream?: {
    url: string;
    verifyChecksums: boolean;
    timeoutMs: number;
    negativeCacheTtlMs: number;
  };
}

const at = "extensions.artifacts";
/** The registry listener's own first path segments; a prefix there would shadow or be shadowed. */
const reserved = ["v2", "_kagami", "livez", "readyz", "startupz"];

function within(a: string, b: string): boolean {
  return a === b || a.startsWith(b + sep);
}

/** The first segment of the Prometheus path on the registry's listener, when metrics are on. */
function metricsSegment(ext: Json): string | undefined {
  const m = ext.metrics;
  if (!isObject(m) || m.enable !== true) return undefined;
  const path = isObject(m.prometheus) && typeof m.prometheus.path === "string" ? m.prometheus.path : "";
  return (path || "/metrics").split("/")[1]?.toLowerCase();
}

function namesFileCopy(redirect: unknown): boolean {
  if (!isObject(redirect)) return false;
  const copies = [...(Array.isArray(redirect.rules) ? redirect.rules : []), redirect.default];
  return copies.some((c) => isObject(c) && typeof c.artifactsBaseUrl === "string");
}

export function artifactsProblems(tree: Json): ConfigProblem[] {
  const ext = isObject(tree.extensions) ? tree.extensions : {};
  const a = ext.artifacts;
  if (!isObject(a) || a.enable === false) return [];
  const out: ConfigProblem[] = [];
  const http = isObject(tree.http) ? tree.http : {};
  if (a.pathPrefix === undefined && a.port === undefined) {
    out.push({
      path: at,
      message:
        'say where files are served: "pathPrefix" (e.g. "/artifacts" on the registry\'s listener), "port" (a listener of its own), or both',
    });
  }
  if (typeof a.pathPrefix === "string") {
    const first = a.pathPrefix.split("/")[1]?.toLowerCase() ?? "";
    if (a.pathPrefix.split("/").some((s) => s === "." || s === "..")) {
      out.push({ path: `${at}.pathPrefix`, message: "must not contain '.' or '..' segments" });
    } else if (reserved.includes(first) || first === metricsSegment(ext)) {
      out.push({
        path: `${at}.pathPrefix`,
        message: `'${a.pathPrefix}' collides with the registry's own /${first}/ endpoints; choose another, e.g. "/artifacts"`,
      });
    }
  }
  if (a.address !== undefined && a.port === undefined) {
    out.push({
      path: `${at}.address`,
      message: 'is the address of a listener of its own, which needs "port" too',
    });
  }
  if (a.port !== undefined && Number(a.port) !== 0 && Number(a.port) === Number(http.port ?? 5000)) {
    out.push({
      path: `${at}.port`,
      message: `is the registry's own port (http.port); use "pathPrefix" to serve files there, or another port`,
    });
  }
  const auth = isObject(http.auth) ? http.auth : {};
  const accounts = auth.htpasswd !== undefined || http.accessControl !== undefined;
  if (a.anonymous === false) {
    out.push({
      path: `${at}.anonymous`,
      message:
        "artifact files are always served without sign-in (a public download mirror); Kagami cannot restrict them, so it refuses rather than serve them openly",
    });
  } else if (accounts && a.anonymous !== true) {
    out.push({
      path: at,
      message:
        'the registry requires accounts (http.auth or http.accessControl) but artifact files are served to anyone; set "anonymous": true to confirm that',
    });
  }
  if (a.redirect === true && !isObject(ext.redirect)) {
    out.push({ path: `${at}.redirect`, message: "needs redirect rules in extensions.redirect" });
  } else if (a.redirect === true && !namesFileCopy(ext.redirect)) {
    // Accepted, this would redirect nothing and say nothing: refused so the operator learns why.
    out.push({
      path: `${at}.redirect`,
      message: "no rule (nor the default) in extensions.redirect names an artifactsBaseUrl to send files to",
    });
  }
  if (typeof a.rootDirectory === "string") {
    const root = resolve(a.rootDirectory);
    const storage = isObject(tree.storage) ? tree.storage : {};
    const stores = [resolve(typeof storage.rootDirectory === "string" ? storage.rootDirectory : "storage")];
    if (isObject(storage.subPaths)) {
      for (const sp of Object.values(storage.subPaths))
        if (isObject(sp) && typeof sp.rootDirectory === "string") stores.push(resolve(sp.rootDirectory));
    }
    if (stores.some((s) => within(root, s) || within(s, root))) {
      out.push({
        path: `${at}.rootDirectory`,
        message: "must be apart from the registry's storage directories: files there would be downloadable",
      });
    }
  }
  return out;
}

interface RawArtifacts {
  enable?: boolean;
  rootDirectory: string;
  pathPrefix?: string;
  address?: string;
  port?: string | number;
  listing?: boolean;
  redirect?: boolean;
  upstream?: { url: string; verifyChecksums?: boolean; timeout?: string; negativeCacheTTL?: string };
}

/** The typed section, after the schema and artifactsProblems passed; undefined when absent or disabled. */
export function normalizeArtifacts(tree: Json, registryAddress: string): ArtifactsConfig | undefined {
  const ext = isObject(tree.extensions) ? tree.extensions : {};
  const raw = ext.artifacts as RawArtifacts | undefined;
  if (!raw || raw.enable === false) return undefined;
  const out: ArtifactsConfig = {
    rootDirectory: resolve(raw.rootDirectory),
    listing: raw.listing ?? false,
    redirect: raw.redirect ?? false,
  };
  if (raw.pathPrefix !== undefined) out.pathPrefix = raw.pathPrefix.replace(/\/+$/, "");
  if (raw.port !== undefined)
    out.listener = { address: raw.address ?? registryAddress, port: Number(raw.port) };
  if (raw.upstream) {
    out.upstream = {
      url: raw.upstream.url.replace(/\/+$/, ""),
      verifyChecksums: raw.upstream.verifyChecksums ?? true,
      timeoutMs: raw.upstream.timeout ? parseDuration(raw.upstream.timeout)! : 10 * 60_000,
      negativeCacheTtlMs: raw.upstream.negativeCacheTTL
        ? parseDuration(raw.upstream.negativeCacheTTL)!
        : 30_000,
    };
  }
  return out;
}

/** Paths the registry's listener answers itself, outside /v2/: a metrics path there would shadow them. */
const ownPaths = ["/livez", "/readyz", "/startupz"];

/**
 * `extensions.metrics.prometheus.path` beside the listener's other paths: the schema already keeps it
 * out of /v2/; here, out of the probes, /_kagami/ and the release files' prefix, where either it or
 * they would silently stop answering.
 */
export function metricsPathProblems(tree: Json): ConfigProblem[] {
  const ext = isObject(tree.extensions) ? tree.extensions : {};
  const m = ext.metrics;
  if (!isObject(m) || m.enable !== true) return [];
  const prom = isObject(m.prometheus) ? m.prometheus : {};
  const path = typeof prom.path === "string" && prom.path !== "" ? prom.path : "/metrics";
  const where = "extensions.metrics.prometheus.path";
  const first = path.split("/")[1]?.toLowerCase() ?? "";
  if (ownPaths.includes(path) || reserved.includes(first)) {
    return [
      {
        path: where,
        message: `'${path}' is one of the registry's own endpoints; choose another, e.g. "/metrics"`,
      },
    ];
  }
  // A path below extensions.artifacts.pathPrefix is reported once, on the prefix (artifactsProblems).
  return [];
}
