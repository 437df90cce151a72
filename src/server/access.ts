import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { parseAuthorization } from "../auth/credentials.ts";
import { HtpasswdAccounts } from "../auth/htpasswd.ts";
import { AccessPolicy, type Action, type Identity } from "../auth/policy.ts";
import { TokenSigner } from "../auth/tokens.ts";
import type { KagamiConfig } from "../config/config.ts";
import { RegistryError } from "../oci/errors.ts";
import type { Ctx } from "./context.ts";
import type { MatchedRoute } from "./routes.ts";

/** Accounts and policy in force; swapped whole when the config file changes. */
export class AccessState {
  readonly policy: AccessPolicy;

  constructor(
    readonly accounts: HtpasswdAccounts | undefined,
    readonly http: KagamiConfig["http"],
    readonly tokens: TokenSigner = new TokenSigner(),
  ) {
    this.policy = new AccessPolicy(http.accessControl, accounts !== undefined);
  }

  static create(http: KagamiConfig["http"], logger: Logger, previous?: AccessState): AccessState {
    const path = http.auth?.htpasswdPath;
    let accounts: HtpasswdAccounts | undefined;
    if (path !== undefined) {
      accounts = previous?.accounts?.path === path ? previous.accounts : new HtpasswdAccounts(path, logger);
    }
    if (previous?.accounts && previous.accounts !== accounts) previous.accounts.close();
    // Tokens name only who signed in, so those issued before a reload stay as good as the accounts behind them.
    return new AccessState(accounts, http, previous?.tokens);
  }

  close(): void {
    this.accounts?.close();
  }

  unauthorized(message: string): RegistryError {
    return new RegistryError("UNAUTHORIZED", message, {
      headers: { "WWW-Authenticate": `Basic realm="${unquoted(this.http.realm)}"` },
    });
  }

  /** Who the request is from; throws 401 for bad or malformed credentials when accounts are configured. */
  async identify(ctx: Ctx): Promise<Identity> {
    if (!this.accounts) return undefined;
    const creds = parseAuthorization(ctx.get("Authorization") || undefined);
    if (creds.kind === "none") return undefined;
    if (creds.kind === "malformed") throw this.unauthorized(creds.reason);
    if (creds.kind === "bearer") return this.tokenHolder(creds.token);
    if (await this.accounts.verify(creds.user, creds.password)) return { user: creds.user };
    if (this.http.auth?.failDelayMs) await sleep(this.http.auth.failDelayMs);
    throw this.unauthorized("invalid user name or password");
  }

  private tokenHolder(token: string): Identity {
    const found = this.tokens.verify(token);
    if (!found || (found.who && !this.accounts?.has(found.who.user))) {
      throw this.unauthorized("the bearer token is invalid or has expired; fetch a new one or sign in again");
    }
    return found.who;
  }

  /**
   * A challenge that sends the client to `/_kagami/token`, where it gets a token for its account or,
   * without credentials, an anonymous one. The realm must be absolute; it names the host the client
   * asked for, since that is where its credentials belong, and the scheme a TLS-terminating proxy
   * says it used (the header only changes the answer to the caller who sent it).
   */
  private tokenChallenge(ctx: Ctx): RegistryError {
    const host = unquoted(ctx.host);
    if (!host) return this.unauthorized("authentication required");
    const forwarded = ctx.get("X-Forwarded-Proto").split(",")[0]!.trim().toLowerCase();
    const scheme = forwarded === "https" || forwarded === "http" ? forwarded : ctx.protocol;
    return new RegistryError("UNAUTHORIZED", "fetch a token from the realm of the WWW-Authenticate header", {
      headers: {
        "WWW-Authenticate": `Bearer realm="${scheme}://${host}/_kagami/token",service="${unquoted(this.http.realm)}"`,
      },
    });
  }

  /** GET /_kagami/token: a bearer token for the Basic credentials sent, or an anonymous one. */
  async issueToken(ctx: Ctx): Promise<void> {
    if (!this.accounts) {
      throw new RegistryError(
        "UNSUPPORTED",
        "no accounts are configured (http.auth.htpasswd), so no tokens either",
        {
          status: 404,
        },
      );
    }
    if (heldToken(ctx)) {
      throw this.unauthorized("a token is not exchanged for another; send Basic credentials");
    }
    const who = await this.identify(ctx);
    if (!who && !this.policy.mayReadSomewhere(undefined)) {
      throw this.unauthorized("authentication required: anonymous callers may read nothing here");
    }
    const issued = this.tokens.issue(who);
    ctx.set("Cache-Control", "no-store");
    ctx.body = {
      token: issued.token,
      access_token: issued.token,
      expires_in: issued.expiresIn,
      issued_at: issued.issuedAt.toISOString(),
    };
  }

  /**
   * Throws 401 (anonymous) or 403 (signed in) unless the caller may do `action` in `repo`, which
   * `names` (its aliases, `repo` among them) may also reach.
   */
  require(who: Identity, repo: string, action: Action, names: readonly string[] = [repo]): void {
    if (this.policy.allowedUnder(who, names, action)) return;
    if (!who && this.accounts) throw this.unauthorized(`authentication required to ${action} '${repo}'`);
    throw new RegistryError(
      "DENIED",
      `${who ? `user '${who.user}'` : "anonymous access"} may not ${action} '${repo}'`,
      {
        detail: { repository: repo, action },
      },
    );
  }

  /**
   * Runs before every API handler: identifies the caller and checks the route's action.
   * `aliases` gives every name that reaches the same content as a repository (a mirrored repository
   * is reachable by its host-prefixed name too); the rules decide over all of them at once.
   */
  async authorize(ctx: Ctx, route: MatchedRoute, aliases: (repo: string) => string[]): Promise<void> {
    const who = await this.identify(ctx);
    ctx.state.identity = who;
    ctx.state.require = (repo: string, action: Action) => this.require(who, repo, action, aliases(repo));
    ctx.state.canRead = (repo: string) => this.policy.allowedUnder(who, aliases(repo), "read");
    switch (route.action) {
      case "none":
        if (who || !this.accounts) return;
        if (this.policy.mayReadSomewhere(undefined)) {
          if (heldToken(ctx)) return;
          // The docker client pings here without credentials and obeys only this answer: after a 200 it
          // never sends the credentials it has (so `docker login` accepts any password), and to Basic it
          // gives up when it has none. A token challenge serves both: it fetches an anonymous token or one
          // for its account.
          if (isDockerClient(ctx.get("User-Agent"))) throw this.tokenChallenge(ctx);
        }
        // containers/image (skopeo, podman, buildah) stays anonymous after a Basic challenge when it has
        // no credentials, and would not send the ones it has after a 200.
        throw this.unauthorized("authentication required");
      case "list":
        if (!this.policy.mayReadSomewhere(who)) {
          if (!who && this.accounts) throw this.unauthorized("authentication required");
          throw new RegistryError("DENIED", "no repository may be read");
        }
        return;
      case "handler":
        // Refuse before the body is read when neither a new tag nor a moved one could be allowed.
        if (!this.policy.allowedUnder(who, aliases(route.repo), "update"))
          ctx.state.require(route.repo, "create");
        return;
      default:
        ctx.state.require(route.repo, route.action);
    }
  }
}

/** The docker CLI says `Docker-Client/<version>`; the daemon, pulling for it, starts with `docker/<version>`. */
function isDockerClient(userAgent: string): boolean {
  return userAgent.includes("Docker-Client/") || userAgent.startsWith("docker/");
}

/** Whether the caller came with a bearer token (checked by `identify`, if that ran). */
function heldToken(ctx: Ctx): boolean {
  return parseAuthorization(ctx.get("Authorization") || undefined).kind === "bearer";
}

/** A value fit to stand between the double quotes of a challenge parameter. */
function unquoted(s: string): string {
  return s.replace(/["\\]/g, "");
}
