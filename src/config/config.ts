import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { Ajv, type ErrorObject } from "ajv";
import cron from "node-cron";
import semver from "semver";
import { type AccessControlConfig, normalizeAccessControl } from "../auth/policy.ts";
import { parseDuration } from "./duration.ts";
import { goRegexpProblem } from "./go-regexp.ts";
import { configSchema } from "./schema.ts";
import { unenforcedSecuritySettings } from "./security-fields.ts";

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
    /** zot's subPaths: repositories under `prefix` are stored under their own root. */
    subPaths?: { prefix: string; rootDirectory: string }[];
  };
  http: {
    address: string;
    port: number;
    realm: string;
    tls?: { cert: string; key: string };
    shutdownTimeoutMs: number;
    auth?: { htpasswdPath: string; failDelayMs: number };
    accessControl?: AccessControlConfig;
  };
  log: { level: LogLevel; output?: string };
  /** `extensions.sync`, when present and enabled. */
  sync?: SyncConfig;
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
  syncLegacyCosignTags?: boolean;
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
  /** JSON path of the field, e.g. `http.port`. */
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

type Tree = { [key: string]: Tree | true | string };

/** Fields this version reads. */
const implemented: Tree = {
  distSpecVersion: true,
  storage: {
    rootDirectory: true,
    uploadMaxAge: true,
    dedupe: true,
    commit: true,
    subPaths: true,
    gc: true,
    gcDelay: true,
    gcInterval: true,
  },
  http: {
    address: true,
    port: true,
    realm: true,
    tls: { cert: true, key: true },
    shutdownTimeout: true,
    auth: { htpasswd: { path: true }, failDelay: true },
    // Keys under accessControl are repository patterns chosen by the user.
    accessControl: true,
  },
  log: { level: true, output: true },
};

/**
 * Fields zot knows that this version does not act on yet: a warning each. Access and
 * authentication settings are not here: ignoring those would grant more, so they are errors
 * (security-fields.ts).
 */
const notYet: Record<string, string> = {
  "storage.subPaths":
    "sub-path storage is not implemented yet; every repository is stored under storage.rootDirectory",
  "storage.storageDriver": "only the local file system is supported; the driver is ignored",
  "storage.cacheDriver": "metadata always lives in SQLite under storage.rootDirectory",
  "storage.remoteCache": "metadata always lives in SQLite under storage.rootDirectory",
  "storage.retention": "retention policies are not implemented yet",
  "storage.scrubInterval": "scrub is not implemented yet",
  "http.auth.apikey": "API keys are not implemented; false, zot's default, is the only value accepted",
  "http.auth.sessionKeysFile": "Kagami keeps no login sessions; ignored",
  "http.auth.sessionDriver": "Kagami keeps no login sessions; ignored",
  "http.auth.secureSession": "Kagami keeps no login sessions; ignored",
  "http.ratelimit": "rate limiting is not implemented yet",
  "http.compat": "compatibility modes are not needed: Docker manifests are always accepted",
  "http.externalUrl": "Location headers are relative, so an external URL is not needed",
  "log.audit": "audit logging is not implemented yet",
};

function describe(err: ErrorObject): string {
  const desc = (err.parentSchema as { description?: string } | undefined)?.description;
  if (desc) return `must be ${desc}`;
  if (err.keyword === "enum") return `must be one of ${(err.params.allowedValues as unknown[]).join(", ")}`;
  if (err.keyword === "required")
    return `is missing required field '${err.params.missingProperty as string}'`;
  return err.message ?? "is invalid";
}

function jsonPath(instancePath: string): string {
  return instancePath
    .split("/")
    .slice(1)
    .map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"))
    .join(".");
}

const ajv = new Ajv({ allErrors: true, verbose: true, strict: false });
ajv.addFormat("go-duration", (v: string) => parseDuration(v) !== undefined);
ajv.addFormat("regex", (v: string) => goRegexpProblem(v) === undefined);
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

function collectWarnings(value: unknown, tree: Tree, prefix: string, out: ConfigProblem[]): void {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return;
  for (const [key, child] of Object.entries(value)) {
    const path = prefix ? `${prefix}.${key}` : key;
    if (notYet[path]) {
      out.push({ path, message: notYet[path] });
      continue;
    }
    if (path === "extensions") {
      for (const ext of Object.keys((child as object) ?? {})) {
        if (ext === "sync") {
          const syncRaw = (child as { sync: { downloadDir?: string; registries?: { urls?: string[] }[] } })
            .sync;
          for (const [i, r] of (syncRaw.registries ?? []).entries()) {
            for (const [j, u] of (r.urls ?? []).entries()) {
              const urlPath = /^[a-z]+:\/\/[^/]+(\/.+)$/.exec(u)?.[1];
              if (urlPath && urlPath !== "/") {
                out.push({
                  path: `extensions.sync.registries[${i}].urls[${j}]`,
                  message: `the path '${urlPath}' is ignored: an upstream is a registry host; name repositories in content prefixes`,
                });
              }
            }
          }
          if (syncRaw.downloadDir !== undefined) {
            out.push({
              path: "extensions.sync.downloadDir",
              message:
                "not needed: downloads are staged inside storage.rootDirectory and verified before use",
            });
          }
          continue;
        }
        out.push({
          path: `extensions.${ext}`,
          message: "this extension is not implemented yet and is ignored",
        });
      }
      continue;
    }
    const known = tree[key];
    if (known === undefined) out.push({ path, message: "unknown field, ignored" });
    else if (typeof known === "object") collectWarnings(child, known, path, out);
  }
}

/** Validates a parsed zot-format config and fills in defaults. Throws ConfigError listing every problem. */
export function parseConfig(raw: unknown, source?: string): LoadedConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError([{ path: "", message: "the configuration must be a JSON object" }], source);
  }
  const unenforced = unenforcedSecuritySettings(raw as Record<string, unknown>);
  if (!validate(raw)) {
    const errors = validate.errors ?? [];
    const anyOfPaths = new Set(errors.filter((e) => e.keyword === "anyOf").map((e) => e.instancePath));
    const problems = errors
      .filter((e) => e.keyword === "anyOf" || !anyOfPaths.has(e.instancePath))
      .map((e) => ({ path: jsonPath(e.instancePath), message: describe(e) }));
    throw new ConfigError([...problems, ...unenforced], source);
  }
  if (unenforced.length > 0) throw new ConfigError(unenforced, source);
  const r = raw as {
    distSpecVersion?: string;
    storage?: {
      rootDirectory?: string;
      uploadMaxAge?: string;
      gc?: boolean;
      gcDelay?: string;
      gcInterval?: string;
      subPaths?: Record<string, { rootDirectory: string }>;
    };
    http?: {
      address?: string;
      port?: string | number;
      realm?: string;
      tls?: { cert: string; key: string };
      shutdownTimeout?: string;
      auth?: { htpasswd?: { path: string }; failDelay?: number };
      accessControl?: Record<string, unknown>;
    };
    log?: { level?: string; output?: string };
  };
  const warnings: ConfigProblem[] = [];
  collectWarnings(raw, implemented, "", warnings);
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
  if (r.http?.tls) config.http.tls = { cert: resolve(r.http.tls.cert), key: resolve(r.http.tls.key) };
  if (r.log?.output) config.log.output = r.log.output;
  if (r.storage?.subPaths) {
    config.storage.subPaths = Object.entries(r.storage.subPaths).map(([prefix, sp]) => ({
      prefix: prefix.replace(/^\/+|\/+$/g, ""),
      rootDirectory: resolve(sp.rootDirectory),
    }));
  }
  if (r.http?.auth?.htpasswd) {
    config.http.auth = {
      htpasswdPath: resolve(r.http.auth.htpasswd.path),
      failDelayMs: (r.http.auth.failDelay ?? 0) * 1000,
    };
  }
  if (r.http?.accessControl) config.http.accessControl = normalizeAccessControl(r.http.accessControl);
  const sync = (raw as { extensions?: { sync?: RawSync } }).extensions?.sync;
  if (sync && sync.enable !== false) config.sync = normalizeSync(sync);
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
      };
      if (r.pollInterval !== undefined) reg.pollIntervalMs = parseDuration(r.pollInterval)!;
      if (r.schedule !== undefined) reg.schedule = r.schedule;
      if (r.certDir !== undefined) reg.certDir = resolve(r.certDir);
      if (r.allowLocalWrites) reg.allowLocalWrites = true;
      return reg;
    }),
  };
  if (raw.credentialsFile !== undefined) out.credentialsFile = resolve(raw.credentialsFile);
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
  return parseConfig(raw, path);
}

export function defaults(): LoadedConfig {
  return parseConfig({});
}
