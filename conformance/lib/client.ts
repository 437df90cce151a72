/**
 * A small registry HTTP client on top of global fetch: `<name>` substitution, relative or absolute
 * Location handling, Basic auth and the Bearer token challenge dance the official suite's client
 * (reggie) performs, and OCI_DEBUG request/response logging.
 */
import { env, type SuiteEnv } from "./env.ts";

export type Method = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface RequestOptions {
  /** Repository used for `<name>`; defaults to OCI_NAMESPACE. */
  name?: string;
  headers?: Record<string, string>;
  query?: Record<string, string>;
  body?: Uint8Array | string;
}

export interface RegistryResponse {
  method: Method;
  url: string;
  status: number;
  headers: Headers;
  body: Buffer;
  text(): string;
  /** Parsed JSON body, or undefined when the body is empty or not JSON. */
  json<T = unknown>(): T | undefined;
  header(name: string): string | null;
  /** The Location header resolved against the request URL (relative and absolute both allowed). */
  location(): string | undefined;
  /** Short description for assertion messages. */
  describe(): string;
}

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses `Bearer realm="...",service="...",scope="..."` (one challenge; that is all registries send). */
export function parseChallenge(header: string): Challenge | undefined {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([\w-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  for (let p = re.exec(m[2] ?? ""); p !== null; p = re.exec(m[2] ?? "")) {
    params[(p[1] ?? "").toLowerCase()] = (p[2] ?? p[3] ?? "").replace(/\\(.)/g, "$1");
  }
  return { scheme: (m[1] ?? "").toLowerCase(), params };
}

export class RegistryClient {
  private tokens = new Map<string, string>();
  private useBasic = false;
  /** Every `Warning` response header seen during the run (checked once at the end of the suite). */
  readonly warnings: { request: string; values: string[] }[] = [];

  constructor(private readonly cfg: SuiteEnv = env) {}

  get namespace(): string {
    return this.cfg.namespace;
  }

  /** Absolute URL for a path template (`/v2/<name>/...`) or an already resolved/relative location. */
  url(pathOrUrl: string, opts: RequestOptions = {}): string {
    const name = opts.name ?? this.cfg.namespace;
    const path = pathOrUrl.replaceAll("<name>", name);
    const u = new URL(path, `${this.cfg.rootUrl}/`);
    for (const [k, v] of Object.entries(opts.query ?? {})) u.searchParams.set(k, v);
    return u.toString();
  }

  private basicHeader(): string | undefined {
    if (this.cfg.username === undefined && this.cfg.password === undefined) return undefined;
    return `Basic ${Buffer.from(`${this.cfg.username ?? ""}:${this.cfg.password ?? ""}`).toString("base64")}`;
  }

  async request(method: Method, pathOrUrl: string, opts: RequestOptions = {}): Promise<RegistryResponse> {
    const url = this.url(pathOrUrl, opts);
    const headers: Record<string, string> = {
      "User-Agent": "kagami-distribution-spec-conformance",
      ...(opts.headers ?? {}),
    };
    let body = typeof opts.body === "string" ? Buffer.from(opts.body) : opts.body;
    // POST/PUT/PATCH always carry a body (possibly empty) so fetch sends `Content-Length: 0`.
    if (body === undefined && (method === "POST" || method === "PUT" || method === "PATCH")) {
      body = new Uint8Array(0);
    }
    const send = async (auth: string | undefined) => {
      const h = { ...headers };
      if (auth) h.Authorization = auth;
      this.debugRequest(method, url, h, body);
      const res = await fetch(url, { method, headers: h, body, redirect: "follow" });
      const buf = Buffer.from(await res.arrayBuffer());
      this.debugResponse(res, buf);
      const warnings = splitWarnings(res.headers.get("warning"));
      if (warnings.length > 0) this.warnings.push({ request: `${method} ${url}`, values: warnings });
      return { res, buf };
    };

    const scopeKey = this.scopeFor(url, method);
    let auth = this.tokens.get(scopeKey) ?? (this.useBasic ? this.basicHeader() : undefined);
    let { res, buf } = await send(auth);
    if (res.status === 401) {
      const challenge = parseChallenge(res.headers.get("www-authenticate") ?? "");
      if (challenge?.scheme === "bearer" && challenge.params.realm) {
        const token = await this.fetchToken(challenge.params, scopeKey);
        if (token) {
          auth = `Bearer ${token}`;
          this.tokens.set(scopeKey, auth);
          ({ res, buf } = await send(auth));
        }
      } else if (challenge?.scheme === "basic" || this.basicHeader()) {
        const basic = this.basicHeader();
        if (basic) {
          this.useBasic = true;
          ({ res, buf } = await send(basic));
        }
      }
    }
    return makeResponse(method, url, res, buf);
  }

  /** Token cache key: the repository scope the request needs (pull, or pull+push for writes). */
  private scopeFor(url: string, method: Method): string {
    const m = /\/v2\/(.+?)\/(?:blobs|manifests|tags|referrers)\//.exec(new URL(url).pathname);
    const actions = method === "GET" || method === "HEAD" ? "pull" : method === "DELETE" ? "delete" : "push";
    return m ? `repository:${m[1]}:${actions}` : "registry";
  }

  private async fetchToken(params: Record<string, string>, scopeKey: string): Promise<string | undefined> {
    const realm = new URL(params.realm ?? "");
    if (params.service) realm.searchParams.set("service", params.service);
    const scopes = new Set<string>();
    if (params.scope) for (const s of params.scope.split(" ")) scopes.add(s);
    if (scopes.size === 0 && scopeKey.startsWith("repository:")) {
      const repo = scopeKey.split(":")[1];
      scopes.add(`repository:${repo}:pull,push,delete`);
    }
    if (this.cfg.authScope) scopes.add(this.cfg.authScope);
    for (const s of scopes) realm.searchParams.append("scope", s);
    const headers: Record<string, string> = {};
    const basic = this.basicHeader();
    if (basic) headers.Authorization = basic;
    this.debugRequest("GET", realm.toString(), headers, undefined);
    const res = await fetch(realm, { headers });
    const text = await res.text();
    if (this.cfg.debug) process.stderr.write(`<-- ${res.status} (token)\n`);
    if (!res.ok) return undefined;
    try {
      const j = JSON.parse(text) as { token?: string; access_token?: string };
      return j.token ?? j.access_token;
    } catch {
      return undefined;
    }
  }

  private debugRequest(method: string, url: string, headers: Record<string, string>, body?: Uint8Array) {
    if (!this.cfg.debug) return;
    const shown = Object.entries(headers)
      .map(([k, v]) => `    ${k}: ${k.toLowerCase() === "authorization" ? "<redacted>" : v}`)
      .join("\n");
    process.stderr.write(
      `--> ${method} ${url}\n${shown}\n${body?.length ? `    <${body.length} bytes>\n` : ""}`,
    );
  }

  private debugResponse(res: Response, buf: Buffer) {
    if (!this.cfg.debug) return;
    const shown = [...res.headers.entries()].map(([k, v]) => `    ${k}: ${v}`).join("\n");
    const text = buf.length > 0 ? buf.subarray(0, 2048).toString("utf8") : "";
    process.stderr.write(`<-- ${res.status}\n${shown}\n${text ? `    ${text}\n` : ""}\n`);
  }
}

/** Splits a combined `Warning` header (values joined by ", " by fetch) at commas outside quotes. */
export function splitWarnings(header: string | null): string[] {
  if (!header) return [];
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < header.length; i++) {
    const ch = header[i];
    if (ch === "\\" && quoted) {
      cur += ch + (header[i + 1] ?? "");
      i++;
      continue;
    }
    if (ch === '"') quoted = !quoted;
    if (ch === "," && !quoted) {
      out.push(cur.trim());
      cur = "";
      continue;
    }
    cur += ch;
  }
  if (cur.trim()) out.push(cur.trim());
  return out;
}

function makeResponse(method: Method, url: string, res: Response, body: Buffer): RegistryResponse {
  return {
    method,
    url,
    status: res.status,
    headers: res.headers,
    body,
    text: () => body.toString("utf8"),
    json<T>() {
      if (body.length === 0) return undefined;
      try {
        return JSON.parse(body.toString("utf8")) as T;
      } catch {
        return undefined;
      }
    },
    header: (name: string) => res.headers.get(name),
    location() {
      const loc = res.headers.get("location");
      if (!loc) return undefined;
      return new URL(loc, url).toString();
    },
    describe() {
      const text = body.length > 0 ? ` body=${body.subarray(0, 400).toString("utf8")}` : "";
      return `${method} ${url} -> ${res.status}${text}`;
    },
  };
}

export const client = new RegistryClient();
