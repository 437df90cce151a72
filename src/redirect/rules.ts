/**
 * Which blob copy serves which client: the first rule whose networks hold the client's address,
 * else the default. Koa-free, so anything that serves blobs or files can ask (the registry's blob
 * endpoints, the redirector, the artifacts server).
 */
import type { BlobCopyConfig, RedirectConfig } from "../config/redirect.ts";
import { isDigest } from "../oci/digest.ts";
import { isValidName } from "../oci/names.ts";
import { BlobCopyChecker, blobCopyUrl } from "./blob-copies.ts";
import { type ClientAddressOptions, clientAddress } from "./client-ip.ts";
import { loadNetworkFile, NetworkFileError, NetworkSet } from "./networks.ts";

/** A rule's network file could not be used; names the config field. */
export class RedirectRulesError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = "RedirectRulesError";
  }
}

interface LoadedRule {
  copy: BlobCopyConfig;
  networks: NetworkSet;
}

/** Where a blob request went, for the caller's log and response. */
export interface BlobCopyTarget {
  rule: string;
  url: string;
}

export class RedirectRules {
  readonly clientAddressOptions: ClientAddressOptions;
  readonly checker: BlobCopyChecker;

  private constructor(
    private readonly rules: LoadedRule[],
    private readonly fallback: BlobCopyConfig | undefined,
    config: RedirectConfig,
    onCheckError?: (url: string, err: unknown) => void,
  ) {
    this.clientAddressOptions = {
      trustedProxies: NetworkSet.of(config.trustedProxies),
      trustedHops: config.trustedHops,
    };
    this.checker = new BlobCopyChecker(
      { timeoutMs: config.checkTimeoutMs, cacheTtlMs: config.checkCacheTtlMs },
      onCheckError,
    );
  }

  /** Reads every rule's network files now: a missing or malformed file stops the start. */
  static load(config: RedirectConfig, onCheckError?: (url: string, err: unknown) => void): RedirectRules {
    const rules = config.rules.map((r, i) => {
      const networks = NetworkSet.of(r.networks);
      for (const [j, f] of r.networkFiles.entries()) {
        try {
          for (const c of loadNetworkFile(f)) networks.add(c);
        } catch (err) {
          if (!(err instanceof NetworkFileError)) throw err;
          throw new RedirectRulesError(`extensions.redirect.rules[${i}].networkFiles[${j}]`, err.message);
        }
      }
      return { copy: r, networks };
    });
    return new RedirectRules(rules, config.default, config, onCheckError);
  }

  /** The client's address from the socket and X-Forwarded-For; throws ClientAddressError. */
  clientAddress(peer: string | undefined, forwarded: string | undefined): string {
    return clientAddress(peer, forwarded, this.clientAddressOptions);
  }

  /** The copy for a client: the first rule holding its address, else the default, else none. */
  pick(clientIp: string): BlobCopyConfig | undefined {
    return this.rules.find((r) => r.networks.has(clientIp))?.copy ?? this.fallback;
  }

  /** The copy of a release file (artifacts) for this client, when its rule names one and it has the file. */
  async fileTarget(clientIp: string, path: string): Promise<string | undefined> {
    const base = this.pick(clientIp)?.artifactsBaseUrl;
    if (!base) return undefined;
    const url = `${base}/${path.split("/").map(encodeURIComponent).join("/")}`;
    return (await this.checker.has(url)) ? url : undefined;
  }

  /** The copy URL to send this client to for a blob, when its copy answers that it has the blob. */
  async blobTarget(
    clientIp: string,
    digest: string,
    repository: string,
  ): Promise<BlobCopyTarget | undefined> {
    const copy = this.pick(clientIp);
    // A redirector takes the name straight from the path: one outside the spec's grammar
    // (`a%2f..%2fx`) would put a path of the client's choosing into a `{repository}` layout.
    if (!copy || !isDigest(digest) || !isValidName(repository)) return undefined;
    const url = blobCopyUrl(copy.baseUrl, copy.layout, digest, repository);
    return (await this.checker.has(url)) ? { rule: copy.name, url } : undefined;
  }
}
