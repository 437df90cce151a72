import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

export interface BasicCredentials {
  username: string;
  password: string;
}

/** Finds the credentials for a registry host (`host[:port]`), and for a repository on it when that is more specific. */
export type CredentialLookup = (host: string, repo?: string) => BasicCredentials | undefined;

/** The names Docker Hub goes by in auth files; a login to any of them counts for all. */
const hubAliases = ["docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"];

/** Reduces an auth-file key (`https://index.docker.io/v1/`, `host:port`, `host/namespace`) to `host[:port][/path]`. */
export function normalizeAuthKey(key: string): string {
  let k = key.trim().replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
  k = k.replace(/\/+$/, "");
  // docker's own login key for Hub names the v1 API path; it means the whole host.
  k = k.replace(/\/v[12]$/, "");
  const slash = k.indexOf("/");
  const host = (slash < 0 ? k : k.slice(0, slash)).toLowerCase();
  const path = slash < 0 ? "" : k.slice(slash);
  return (hubAliases.includes(host) ? "docker.io" : host) + path;
}

function canonicalHost(host: string): string {
  const h = host.toLowerCase();
  return hubAliases.includes(h) ? "docker.io" : h;
}

/**
 * A table of credentials keyed by `host[:port][/namespace...]`; the most specific key matching a
 * repository wins, as podman does.
 */
export class CredentialStore {
  private readonly entries = new Map<string, BasicCredentials>();

  set(key: string, creds: BasicCredentials): void {
    this.entries.set(normalizeAuthKey(key), creds);
  }

  get size(): number {
    return this.entries.size;
  }

  lookup: CredentialLookup = (host, repo) => {
    const h = canonicalHost(host);
    if (repo) {
      const parts = repo.split("/");
      for (let i = parts.length; i > 0; i--) {
        const found = this.entries.get(`${h}/${parts.slice(0, i).join("/")}`);
        if (found) return found;
      }
    }
    return this.entries.get(h);
  };

  /** Adds the entries of `other` that this store does not have. */
  merge(other: CredentialStore): this {
    for (const [k, v] of other.entries) if (!this.entries.has(k)) this.entries.set(k, v);
    return this;
  }
}

export class CredentialsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CredentialsError";
  }
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CredentialsError(`cannot read credentials file ${path}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CredentialsError(`credentials file ${path} is not valid JSON: ${(err as Error).message}`);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** zot's `credentialsFile`: `{"host:port": {"username": "...", "password": "..."}}`. */
export function loadZotCredentials(path: string): CredentialStore {
  return storeFromZotCredentials(readJson(path), path);
}

/**
 * zot's `credentialsFile` as zot treats it: a file that does not exist means no credentials (zot
 * logs it and goes on), reported as `missing` so the caller can say so. A file that exists but
 * cannot be read or parsed is still an error: the operator wrote something that is not used.
 */
export function loadOptionalZotCredentials(path: string): { store: CredentialStore; missing: boolean } {
  if (!existsSync(path)) return { store: new CredentialStore(), missing: true };
  return { store: loadZotCredentials(path), missing: false };
}

function storeFromZotCredentials(doc: unknown, path: string): CredentialStore {
  if (!isObject(doc)) throw new CredentialsError(`${path}: expected an object keyed by registry host`);
  const store = new CredentialStore();
  for (const [host, v] of Object.entries(doc)) {
    if (!isObject(v) || typeof v.username !== "string" || typeof v.password !== "string") {
      throw new CredentialsError(`${path}: entry '${host}' needs string fields "username" and "password"`);
    }
    store.set(host, { username: v.username, password: v.password });
  }
  return store;
}

/**
 * A docker `config.json` or containers `auth.json`: `{"auths": {"host": {"auth": base64("user:pass")}}}`.
 * Entries with `username`/`password` fields are read too. Credential helpers (`credsStore`,
 * `credHelpers`) are not run.
 */
export function loadAuthFile(path: string): CredentialStore {
  const doc = readJson(path);
  const store = new CredentialStore();
  if (!isObject(doc)) throw new CredentialsError(`${path}: expected a JSON object with "auths"`);
  const auths = doc.auths;
  if (auths === undefined) return store;
  if (!isObject(auths)) throw new CredentialsError(`${path}: "auths" must be an object`);
  for (const [key, v] of Object.entries(auths)) {
    if (!isObject(v)) continue;
    if (typeof v.auth === "string" && v.auth !== "") {
      const decoded = Buffer.from(v.auth, "base64").toString("utf8");
      const idx = decoded.indexOf(":");
      if (idx < 0) throw new CredentialsError(`${path}: "auth" of '${key}' is not base64 of user:password`);
      store.set(key, { username: decoded.slice(0, idx), password: decoded.slice(idx + 1) });
    } else if (typeof v.username === "string" && typeof v.password === "string") {
      store.set(key, { username: v.username, password: v.password });
    }
  }
  return store;
}

/**
 * The auth files podman, skopeo and docker read, most specific first: `$REGISTRY_AUTH_FILE`,
 * `${XDG_RUNTIME_DIR}/containers/auth.json`, `~/.config/containers/auth.json`,
 * `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`.
 */
export function defaultAuthFiles(env: NodeJS.ProcessEnv = process.env): string[] {
  const files: string[] = [];
  if (env.REGISTRY_AUTH_FILE) files.push(env.REGISTRY_AUTH_FILE);
  if (env.XDG_RUNTIME_DIR) files.push(join(env.XDG_RUNTIME_DIR, "containers", "auth.json"));
  const home = env.HOME ?? homedir();
  files.push(join(env.XDG_CONFIG_HOME ?? join(home, ".config"), "containers", "auth.json"));
  files.push(join(env.DOCKER_CONFIG ?? join(home, ".docker"), "config.json"));
  return files;
}

/** Reads every default auth file that exists; earlier files win for the same key. */
export function loadDefaultAuthFiles(env: NodeJS.ProcessEnv = process.env): CredentialStore {
  const store = new CredentialStore();
  for (const f of defaultAuthFiles(env)) {
    let exists = true;
    try {
      readFileSync(f);
    } catch {
      exists = false;
    }
    if (exists) store.merge(loadAuthFile(f));
  }
  return store;
}

/** `user:password` as skopeo's `--src-creds` takes it (a missing password is empty). */
export function parseCredsFlag(value: string): BasicCredentials {
  const idx = value.indexOf(":");
  if (idx === 0) throw new CredentialsError("credentials must be USERNAME[:PASSWORD] with a user name");
  return idx < 0
    ? { username: value, password: "" }
    : { username: value.slice(0, idx), password: value.slice(idx + 1) };
}
