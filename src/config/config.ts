import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import cron from "node-cron";
import semver from "semver";
import { type AccessControlConfig, normalizeAccessControl } from "../auth/policy.ts";
import type { CacheQuotaOptions } from "../store/quota.ts";
import type { RetentionOptions } from "../store/retention.ts";
import {
  type ArtifactsConfig,
  artifactsProblems,
  metricsPathProblems,
  normalizeArtifacts,
} from "./artifacts.ts";
import { parseDuration } from "./duration.ts";
import { type GcTimeWindow, parseGcTimeWindow } from "./gc-window.ts";
import { goRegexpProblem } from "./go-regexp.ts";
import { type RawCacheQuota, type RawRetention, storeHousekeeping } from "./housekeeping.ts";
import { isObject } from "./json.ts";
import { normalizeKeys } from "./keys.ts";
import { fieldPath, pointerToPath } from "./paths.ts";
import { normalizeRedirect, type RedirectConfig, redirectProblems } from "./redirect.ts";
import { configSchema } from "./schema.ts";
import { unenforcedSecuritySettings } from "./security-fields.ts";
import { parseSize } from "./size.ts";
import { syncRuleProblems } from "./sync-rules.ts";
import { zotRuleProblems } from "./zot-rules.ts";

export type LogLevel = "trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent";

export interface KagamiConfig {
  distSpecVersion: string;
  storage: {
    rootDirectory: string;
    /** Idle upload sessions older than this are purged. */
    uploadMaxAgeMs: number;
    gc: boolean;
    /** Content younger than this is never collected. */
    gcDelayMs: number;
    gcIntervalMs: number;
    /** A periodic collection that is due starts only inside this daily UTC window. */
    gcTimeWindow?: GcTimeWindow;
    /** zot's storage.retention for the root store. */
    retention?: RetentionOptions;
    /** Kagami's size limit on the root store's mirrored content. */
    cacheQuota?: CacheQuotaOptions;
    /** zot's subPaths: repositories under `prefix` are stored under their own root. */
    subPaths?: {
      prefix: string;
      rootDirectory: string;
      retention?: RetentionOptions;
      cacheQuota?: CacheQuotaOptions;
    }[];
  };
  http: {
    address: string;
    port: number;
    realm: string;
    tls?: { cert: string; key: string };
    shutdownTimeoutMs: number;
    /** Go's ReadTimeout: a request's headers and body must arrive within this. Unset: no limit. */
    readTimeoutMs?: number;
    /** Go's WriteTimeout: a response must be written within this of its request's headers. */
    writeTimeoutMs?: number;
    auth?: { htpasswdPath: string; failDelayMs: number };
    accessControl?: AccessControlConfig;
  };
  log: { level: LogLevel; output?: string };
  /** `extensions.sync`, when present and enabled. */
  sync?: SyncConfig;
  /** `extensions.redirect` (Kagami's): blob copies by client network, or the redirector mode. */
  redirect?: RedirectConfig;
  /** `extensions.artifacts` (Kagami's), when present and enabled. */
  artifacts?: ArtifactsConfig;
  /** `extensions.metrics`, when enabled: where the Prometheus text is served. */
  metrics?: { path: string };
  /** The file it came from, if any. */
  source?: string;
}

export interface SyncContent {
  prefix: string;
  destination?: string;
  stripPrefix: boolean;
  tags?: { regex?: string; excludeRegex?: string; semver?: boolean | string };
}

export interface SyncRegistryConfig {
  /** Base URLs with scheme, tried in order. */
  urls: string[];
  onDemand: boolean;
  pollIntervalMs?: number;
  schedule?: string;
  tlsVerify: boolean;
  certDir?: string;
  maxRetries: number;
  retryDelayMs: number;
  /** Equal to retryDelayMs unless maxRetryDelay is set: zot's fixed retry interval. */
  maxRetryDelayMs: number;
  onlySigned: boolean;
  /** Longest one upstream request may take, body included (zot's syncTimeout). */
  syncTimeoutMs?: number;
  /** Requests in flight at once per upstream URL. */
  reqConcurrent?: number;
  /** Requests started per second per upstream URL. */
  reqPerSec?: number;
  /** Idle connections kept per upstream host. */
  maxIdleConnsPerHost?: number;
  /** Also copy cosign's `sha256-<hex>.sig`/`.sbom`/`.att` tags (zot's default: true). */
  syncLegacyCosignTags?: boolean;
  /** Keep Docker manifests as they are rather than convert them (needs http.compat docker2s2). */
  preserveDigest?: boolean;
  /** A cached tag is re-checked upstream only when its last check is older than this. */
  manifestCheckIntervalMs: number;
  /** How long an upstream "not found" or failure is remembered for a reference. */
  negativeCacheTtlMs: number;
  content: SyncContent[];
  /**
   * Pushes and deletes into the repositories this upstream serves on demand. Off unless set: a
   * pushed tag is local content that is never refreshed from upstream.
   */
  allowLocalWrites?: boolean;
}

export interface SyncConfig {
  enable: boolean;
  credentialsFile?: string;
  registries: SyncRegistryConfig[];
}

export interface ConfigProblem {
  /** Where the field is, e.g. `http.port` or `extensions.sync.registries[0].urls[1]`. */
  path: string;
  message: string;
}

/** A config that cannot be used; lists every problem with the field it concerns. */
export class ConfigError extends Error {
  constructor(
    readonly problems: ConfigProblem[],
    readonly source?: string,
  ) {
    super(
      `invalid configuration${source ? ` in ${source}` : ""}:\n` +
        problems.map((p) => `  ${p.path || "(top level)"}: ${p.message}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

export interface LoadedConfig {
  config: KagamiConfig;
  warnings: ConfigProblem[];
}

export const defaultConfig: KagamiConfig = {
  distSpecVersion: "1.1.0",
  storage: {
    rootDirectory: "storage",
    uploadMaxAgeMs: 24 * 3_600_000,
    gc: true,
    gcDelayMs: 3_600_000,
    gcIntervalMs: 24 * 3_600_000,
  },
  http: { address: "127.0.0.1", port: 5000, realm: "kagami", shutdownTimeoutMs: 10_000 },
  log: { level: "info" },
};

/**
 * Fields zot knows that this version does not act on yet: a warning each. Access and
 * authentication settings are not here: ignoring those would grant more, so they are errors
 * (security-fields.ts).
 */
const notYet: Record<string, string> = {
  "storage.storageDriver": "only the local file system is supported; the driver is ignored",
  "storage.cacheDriver": "metadata always lives in SQLite under storage.rootDirectory",
  "storage.remoteCache": "metadata always lives in SQLite under storage.rootDirectory",
  "storage.maxRepos": "a limit on the number of repositories is not implemented; ignored",
  "storage.redirectBlobURL": "blobs are always served by Kagami itself; ignored",
  "storage.subPaths.*.storageDriver": "only the local file system is supported; the driver is ignored",
  "storage.subPaths.*.cacheDriver": "metadata always lives in SQLite under the sub-path's rootDirectory",
  "storage.subPaths.*.remoteCache": "metadata always lives in SQLite under the sub-path's rootDirectory",
  "storage.subPaths.*.maxRepos": "a limit on the number of repositories is not implemented; ignored",
  "storage.subPaths.*.redirectBlobURL": "blobs are always served by Kagami itself; ignored",
  "storage.subPaths.*.gc": "garbage collection follows storage.gc for every sub-path",
  "storage.subPaths.*.gcDelay": "garbage collection follows storage.gcDelay for every sub-path",
  "storage.subPaths.*.gcInterval": "garbage collection follows storage.gcInterval for every sub-path",
  "storage.subPaths.*.gcTimeWindow": "garbage collection follows storage.gcTimeWindow for every sub-path",
  "storage.subPaths.*.uploadMaxAge": "uploads are purged after storage.uploadMaxAge in every sub-path",
  "http.auth.sessionKeysFile": "Kagami keeps no login sessions; ignored",
  "http.auth.sessionDriver": "Kagami keeps no login sessions; ignored",
  "http.auth.secureSession": "Kagami keeps no login sessions; ignored",
  "http.allowOrigin": "CORS headers are not sent; browsers on other origins cannot call the API",
  "http.ratelimit": "rate limiting is not implemented yet",
  "http.externalUrl": "Location headers are relative, so an external URL is not needed",
  "log.audit": "audit logging is not implemented yet",
  scheduler: "Kagami runs background work on its own schedule; the worker count is ignored",
  cluster:
    "scale-out clustering is not implemented: this instance serves only its own storage and forwards nothing to other members",
  "extensions.sync.downloadDir":
    "not needed: downloads are staged inside storage.rootDirectory and verified before use",
  "extensions.sync.registries[].credentialHelper":
    "credential helpers are not run; upstream credentials come from credentialsFile only",
  "extensions.sync.registries[].oauth2CredentialHelper":
    "credential helpers are not run; upstream credentials come from credentialsFile only",
  "extensions.sync.registries[].disableHTTP2":
    "ignored: Kagami talks HTTP/1.1 to upstreams and opens a connection per concurrent request",
};

/** The concrete paths in `value` that a pattern of `notYet` names (`*` any key, `[]` any index). */
function occurrences(value: unknown, pattern: string): string[] {
  const segs = pattern.split(".").flatMap((s) => (s.endsWith("[]") ? [s.slice(0, -2), "[]"] : [s]));
  let found: { v: unknown; at: (string | number)[] }[] = [{ v: value, at: [] }];
  for (const seg of segs) {
    const next: typeof found = [];
    for (const { v, at } of found) {
      if (seg === "[]") {
        if (Array.isArray(v)) for (const [i, x] of v.entries()) next.push({ v: x, at: [...at, i] });
      } else if (isObject(v)) {
        const obj = v;
        for (const k of seg === "*" ? Object.keys(obj) : [seg]) {
          if (obj[k] !== undefined) next.push({ v: obj[k], at: [...at, k] });
        }
      }
    }
    found = next;
  }
  return found.map((f) => fieldPath(f.at));
}

function describe(err: ErrorObject): string {
  const desc = (err.parentSchema as { description?: string } | undefined)?.description;
  if (desc) return `must be ${desc}`;
  if (err.keyword === "enum") return `must be one of ${(err.params.allowedValues as unknown[]).join(", ")}`;
  if (err.keyword === "required")
    return `is missing required field '${err.params.missingProperty as string}'`;
  return err.message ?? "is invalid";
}

const ajv = new Ajv({ allErrors: true, verbose: true, strict: false });
ajv.addFormat("go-duration", (v: string) => parseDuration(v) !== undefined);
ajv.addFormat("regex", (v: string) => goRegexpProblem(v) === undefined);
ajv.addFormat("byte-size", (v: string) => parseSize(v) !== undefined);
ajv.addFormat("gc-window", (v: string) => typeof parseGcTimeWindow(v) !== "string");
ajv.addFormat("semver-range", (v: string) => semver.validRange(v) !== null);
ajv.addFormat("cron", (v: string) => cron.validate(v));
ajv.addFormat("registry-url", (v: string) => {
  try {
    const u = new URL(/^[a-z]+:\/\//.test(v) ? v : `https://${v}`);
    return (u.protocol === "http:" || u.protocol === "https:") && u.hostname !== "";
  } catch {
    return false;
  }
});
const validate = ajv.compile(configSchema);

function collectWarnings(value: Record<string, unknown>): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const [pattern, message] of Object.entries(notYet)) {
    for (const path of occurrences(value, pattern)) out.push({ path, message });
  }
  const extensions = value.extensions as Record<string, unknown> | undefined;
  for (const ext of Object.keys(extensions ?? {})) {
    if (ext !== "sync" && ext !== "redirect" && ext !== "artifacts" && ext !== "metrics")
      out.push({
        path: `extensions.${ext}`,
        message: "this extension is not implemented yet and is ignored",
      });
  }
  const registries = (extensions?.sync as { registries?: { urls?: unknown }[] } | undefined)?.registries;
  for (const [i, r] of (Array.isArray(registries) ? registries : []).entries()) {
    for (const [j, u] of (Array.isArray(r?.urls) ? r.urls : []).entries()) {
      const urlPath = typeof u === "string" ? /^[a-z]+:\/\/[^/]+(\/.+)$/.exec(u)?.[1] : undefined;
      if (urlPath && urlPath !== "/") {
        out.push({
          path: `extensions.sync.registries[${i}].urls[${j}]`,
          message: `the path '${urlPath}' is ignored: an upstream is a registry host; name repositories in content prefixes`,
        });
      }
    }
  }
  return out;
}

function valueAt(value: unknown, segs: string[]): unknown {
  let v = value;
  for (const s of segs) v = (v as Record<string, unknown> | undefined)?.[s];
  return v;
}

/** Validates a parsed zot-format config and fills in defaults. Throws ConfigError listing every problem. */
export function parseConfig(raw: unknown, source?: string): LoadedConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError([{ path: "", message: "the configuration must be a JSON object" }], source);
  }
  // zot matches field names in any case; everything after this sees the canonical spelling.
  const keys = normalizeKeys(raw as Record<string, unknown>, configSchema);
  const tree = keys.value as Record<string, unknown>;
  const unenforced = unenforcedSecuritySettings(tree);
  if (!validate(tree)) {
    const errors = validate.errors ?? [];
    const anyOfPaths = new Set(errors.filter((e) => e.keyword === "anyOf").map((e) => e.instancePath));
    const problems = errors
      .filter((e) => e.keyword === "anyOf" || !anyOfPaths.has(e.instancePath))
      .map((e) => ({
        path: pointerToPath(e.instancePath, (segs) => Array.isArray(valueAt(tree, segs))),
        message: describe(e),
      }));
    throw new ConfigError([...keys.problems, ...problems, ...unenforced], source);
  }
  const refused = [
    ...keys.problems,
    ...unenforced,
    ...syncRuleProblems(tree),
    ...zotRuleProblems(tree),
    ...redirectProblems(tree),
    ...artifactsProblems(tree),
    ...metricsPathProblems(tree),
  ];
  if (refused.length > 0) throw new ConfigError(refused, source);
  const r = tree as {
    distSpecVersion?: string;
    storage?: {
      rootDirectory?: string;
      uploadMaxAge?: string;
      gc?: boolean;
      gcDelay?: string;
      gcInterval?: string;
      gcTimeWindow?: string;
      retention?: RawRetention;
      cacheQuota?: RawCacheQuota;
      subPaths?: Record<
        string,
        { rootDirectory: string; retention?: RawRetention; cacheQuota?: RawCacheQuota }
      >;
    };
    http?: {
      address?: string;
      port?: string | number;
      realm?: string;
      tls?: { cert: string; key: string };
      shutdownTimeout?: string;
      readTimeout?: string;
      writeTimeout?: string;
      auth?: { htpasswd?: { path: string }; failDelay?: number };
      accessControl?: Record<string, unknown>;
    };
    log?: { level?: string; output?: string };
  };
  const warnings = collectWarnings(tree);
  const level = r.log?.level === "panic" ? "fatal" : ((r.log?.level as LogLevel | undefined) ?? "info");
  const config: KagamiConfig = {
    distSpecVersion: r.distSpecVersion ?? defaultConfig.distSpecVersion,
    storage: {
      rootDirectory: resolve(r.storage?.rootDirectory ?? defaultConfig.storage.rootDirectory),
      uploadMaxAgeMs: r.storage?.uploadMaxAge
        ? parseDuration(r.storage.uploadMaxAge)!
        : defaultConfig.storage.uploadMaxAgeMs,
      gc: r.storage?.gc ?? defaultConfig.storage.gc,
      gcDelayMs: r.storage?.gcDelay ? parseDuration(r.storage.gcDelay)! : defaultConfig.storage.gcDelayMs,
      gcIntervalMs: r.storage?.gcInterval
        ? parseDuration(r.storage.gcInterval)!
        : defaultConfig.storage.gcIntervalMs,
    },
    http: {
      address: r.http?.address ?? defaultConfig.http.address,
      port: r.http?.port !== undefined ? Number(r.http.port) : defaultConfig.http.port,
      realm: r.http?.realm ?? defaultConfig.http.realm,
      shutdownTimeoutMs: r.http?.shutdownTimeout
        ? parseDuration(r.http.shutdownTimeout)!
        : defaultConfig.http.shutdownTimeoutMs,
    },
    log: { level },
  };
  Object.assign(config.storage, storeHousekeeping(r.storage ?? {}));
  const window = r.storage?.gcTimeWindow ? parseGcTimeWindow(r.storage.gcTimeWindow) : undefined;
  if (typeof window === "object") config.storage.gcTimeWindow = window;
  if (r.http?.readTimeout !== undefined) config.http.readTimeoutMs = parseDuration(r.http.readTimeout)!;
  if (r.http?.writeTimeout !== undefined) config.http.writeTimeoutMs = parseDuration(r.http.writeTimeout)!;
  if (r.http?.tls) config.http.tls = { cert: resolve(r.http.tls.cert), key: resolve(r.http.tls.key) };
  if (r.log?.output) config.log.output = r.log.output;
  if (r.storage?.subPaths) {
    config.storage.subPaths = Object.entries(r.storage.subPaths).map(([prefix, sp]) => ({
      prefix: prefix.replace(/^\/+|\/+$/g, ""),
      rootDirectory: resolve(sp.rootDirectory),
      ...storeHousekeeping(sp),
    }));
  }
  if (r.http?.auth?.htpasswd) {
    config.http.auth = {
      htpasswdPath: resolve(r.http.auth.htpasswd.path),
      failDelayMs: (r.http.auth.failDelay ?? 0) * 1000,
    };
  }
  if (r.http?.accessControl) config.http.accessControl = normalizeAccessControl(r.http.accessControl);
  const sync = (tree as { extensions?: { sync?: RawSync } }).extensions?.sync;
  if (sync && sync.enable !== false) config.sync = normalizeSync(sync);
  const redirect = (tree as { extensions?: { redirect?: Parameters<typeof normalizeRedirect>[0] } })
    .extensions?.redirect;
  if (redirect) config.redirect = normalizeRedirect(redirect, (p) => resolve(p));
  const artifacts = normalizeArtifacts(tree, config.http.address);
  if (artifacts) config.artifacts = artifacts;
  const metrics = (
    tree as { extensions?: { metrics?: { enable?: boolean; prometheus?: { path?: string } } } }
  ).extensions?.metrics;
  // zot serves nothing unless enable is true; an empty path is its default, /metrics.
  if (metrics?.enable === true) config.metrics = { path: metrics.prometheus?.path || "/metrics" };
  if (source) config.source = source;
  return { config, warnings };
}

interface RawSync {
  enable?: boolean;
  credentialsFile?: string;
  registries?: {
    urls: string[];
    onDemand?: boolean;
    pollInterval?: string;
    schedule?: string;
    tlsVerify?: boolean;
    certDir?: string;
    maxRetries?: number;
    retryDelay?: string;
    maxRetryDelay?: string;
    onlySigned?: boolean;
    manifestCheckInterval?: string;
    negativeCacheTTL?: string;
    content?: SyncContent[];
    allowLocalWrites?: boolean;
    syncTimeout?: string;
    reqConcurrent?: number;
    reqPerSec?: number;
    maxIdleConnsPerHost?: number;
    syncLegacyCosignTags?: boolean;
    preserveDigest?: boolean;
  }[];
}

const ms = (v: string | undefined, fallback: number): number =>
  v === undefined ? fallback : parseDuration(v)!;

function normalizeSync(raw: RawSync): SyncConfig {
  const out: SyncConfig = {
    enable: true,
    registries: (raw.registries ?? []).map((r) => {
      const reg: SyncRegistryConfig = {
        urls: r.urls.map((u) => new URL(/^[a-z]+:\/\//.test(u) ? u : `https://${u}`).origin),
        onDemand: r.onDemand ?? false,
        tlsVerify: r.tlsVerify ?? true,
        maxRetries: r.maxRetries ?? 3,
        retryDelayMs: ms(r.retryDelay, 500),
        maxRetryDelayMs: ms(r.maxRetryDelay, r.retryDelay === undefined ? 30_000 : ms(r.retryDelay, 500)),
        onlySigned: r.onlySigned ?? false,
        manifestCheckIntervalMs: ms(r.manifestCheckInterval, 5 * 60_000),
        negativeCacheTtlMs: ms(r.negativeCacheTTL, 30_000),
        content: (r.content ?? []).map((c) => ({ ...c, stripPrefix: c.stripPrefix ?? false })),
        syncLegacyCosignTags: r.syncLegacyCosignTags ?? true,
        preserveDigest: r.preserveDigest ?? false,
      };
      if (r.syncTimeout !== undefined) reg.syncTimeoutMs = parseDuration(r.syncTimeout)!;
      if (r.reqConcurrent !== undefined) reg.reqConcurrent = r.reqConcurrent;
      if (r.reqPerSec !== undefined) reg.reqPerSec = r.reqPerSec;
      if (r.maxIdleConnsPerHost !== undefined) reg.maxIdleConnsPerHost = r.maxIdleConnsPerHost;
      if (r.pollInterval !== undefined) reg.pollIntervalMs = parseDuration(r.pollInterval)!;
      if (r.schedule !== undefined) reg.schedule = r.schedule;
      // zot reads an empty path as "no directory"; resolve("") would be the working directory.
      if (r.certDir) reg.certDir = resolve(r.certDir);
      if (r.allowLocalWrites) reg.allowLocalWrites = true;
      return reg;
    }),
  };
  // zot's ECR and GCP examples write "credentialsFile": "" for "no file".
  if (raw.credentialsFile) out.credentialsFile = resolve(raw.credentialsFile);
  return out;
}

export function loadConfigFile(path: string): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError([{ path: "", message: `cannot read the file: ${(err as Error).message}` }], path);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError([{ path: "", message: `not valid JSON: ${(err as Error).message}` }], path);
  }
  if (isObject(raw) && Object.keys(raw).length === 0) {
    // zot refuses a file with nothing in it; the embedded default is what `serve` without --config is for.
    throw new ConfigError(
      [{ path: "(top level)", message: "the configuration is empty; zot refuses an empty file too" }],
      path,
    );
  }
  return parseConfig(raw, path);
}

export function defaults(): LoadedConfig {
  return parseConfig({});
}
