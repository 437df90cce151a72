/**
 * Redirector mode: a registry front that stores nothing (archeio's role at registry.k8s.io). Each
 * pull request is answered with a redirect: blobs to the copy near the client when it has them,
 * cosign signature tags to the signature upstream, everything else to the upstream registry.
 * Only GET and HEAD exist, and nothing of the client's request but path and query goes along.
 */
import type { RedirectConfig, UpstreamTarget } from "../config/redirect.ts";
import type { ErrorCode } from "../oci/errors.ts";
import { ClientAddressError } from "./client-ip.ts";
import type { RedirectRules } from "./rules.ts";

export interface RedirectorRequest {
  method: string;
  /** The raw path, as sent. */
  path: string;
  /** The query with its `?`, or "". */
  search: string;
  /** The socket's remote address. */
  peer: string | undefined;
  /** The X-Forwarded-For header, if any. */
  forwarded: string | undefined;
}

export type RedirectorAnswer =
  | { kind: "ok" }
  | { kind: "redirect"; location: string; to: "copy" | "upstream" | "signature" | "page"; rule?: string }
  | { kind: "error"; status: number; code: ErrorCode; message: string; headers?: Record<string, string> };

/** archeio's blob pattern: a digest always has a colon, which a repository name never does. */
const blobPath = /^\/v2\/(.+)\/blobs\/([^/]+:[a-zA-Z0-9=_-]+)$/;
/** cosign's signature and attestation tags: `sha256-<hex>.sig` / `.att`. */
const cosignTag = /^\/v2\/.+\/manifests\/sha256-[a-f0-9]{64}\.(sig|att)$/;

export function upstreamLocation(u: UpstreamTarget, path: string, search: string): string {
  const rest = path.replace(/^\/v2\/?/, "");
  const prefix = u.pathPrefix ? `${u.pathPrefix}/` : "";
  return `${u.url}/v2/${prefix}${rest}${search}`;
}

export class Redirector {
  private readonly upstream: UpstreamTarget;

  constructor(
    private readonly config: RedirectConfig,
    private readonly rules: RedirectRules,
  ) {
    if (!config.upstream) throw new Error("a redirector needs extensions.redirect.upstream");
    this.upstream = config.upstream;
  }

  async answer(req: RedirectorRequest): Promise<RedirectorAnswer> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return {
        kind: "error",
        status: 405,
        code: "UNSUPPORTED",
        message: `${req.method} is not supported: this registry only redirects pulls (GET and HEAD)`,
        headers: { Allow: "GET, HEAD" },
      };
    }
    const { path } = req;
    if (path === "/v2" || path === "/v2/") return { kind: "ok" };
    if (!path.startsWith("/v2/")) {
      const page = Object.hasOwn(this.config.pages, path) ? this.config.pages[path] : undefined;
      if (page) return { kind: "redirect", location: page, to: "page" };
      return {
        kind: "error",
        status: 404,
        code: "NAME_UNKNOWN",
        message: `no such page: ${path.slice(0, 200)}`,
      };
    }
    if (path.split("/").some((s) => /^(\.|%2e){1,2}$/i.test(s))) {
      return {
        kind: "error",
        status: 400,
        code: "NAME_INVALID",
        message: "path segments '.' and '..' are not allowed",
      };
    }
    // No repository name, tag or digest holds a backslash; a URL parser (browsers, fetch) reads
    // one as `/` in the Location, so `x\..\..\other` would climb out of the upstream's path prefix.
    if (path.includes("\\")) {
      return {
        kind: "error",
        status: 400,
        code: "NAME_INVALID",
        message: "a backslash is not allowed in a registry path",
      };
    }
    if (path === "/v2/_catalog" || path === "/v2/_catalog/") {
      return {
        kind: "error",
        status: 404,
        code: "UNSUPPORTED",
        message: "the repository list (_catalog) is not served here",
      };
    }
    const blob = blobPath.exec(path);
    if (blob) {
      let client: string;
      try {
        client = this.rules.clientAddress(req.peer, req.forwarded);
      } catch (err) {
        if (!(err instanceof ClientAddressError)) throw err;
        return {
          kind: "error",
          status: 400,
          code: "UNSUPPORTED",
          message: `cannot tell the client's address: ${err.message}`,
        };
      }
      const copy = await this.rules.blobTarget(client, blob[2]!, blob[1]!);
      if (copy) return { kind: "redirect", location: copy.url, to: "copy", rule: copy.rule };
    } else if (this.config.signatureUpstream && cosignTag.test(path)) {
      return {
        kind: "redirect",
        location: upstreamLocation(this.config.signatureUpstream, path, req.search),
        to: "signature",
      };
    }
    return { kind: "redirect", location: upstreamLocation(this.upstream, path, req.search), to: "upstream" };
  }
}
