import { setTimeout as sleep } from "node:timers/promises";
import type { Logger } from "pino";
import { parseAuthorization } from "../auth/credentials.ts";
import { HtpasswdAccounts } from "../auth/htpasswd.ts";
import { AccessPolicy, type Action, type Identity } from "../auth/policy.ts";
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
    return new AccessState(accounts, http);
  }

  close(): void {
    this.accounts?.close();
  }

  unauthorized(message: string): RegistryError {
    return new RegistryError("UNAUTHORIZED", message, {
      headers: { "WWW-Authenticate": `Basic realm="${this.http.realm.replace(/"/g, "")}"` },
    });
  }

  /** Who the request is from; throws 401 for bad or malformed credentials when accounts are configured. */
  async identify(ctx: Ctx): Promise<Identity> {
    if (!this.accounts) return undefined;
    const creds = parseAuthorization(ctx.get("Authorization") || undefined);
    if (creds.kind === "none") return undefined;
    if (creds.kind === "malformed") throw this.unauthorized(creds.reason);
    if (await this.accounts.verify(creds.user, creds.password)) return { user: creds.user };
    if (this.http.auth?.failDelayMs) await sleep(this.http.auth.failDelayMs);
    throw this.unauthorized("invalid user name or password");
  }

  /** Throws 401 (anonymous) or 403 (signed in) unless the caller may do `action` in `repo`. */
  require(who: Identity, repo: string, action: Action): void {
    if (this.policy.allowed(who, repo, action)) return;
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
   * is reachable by its host-prefixed name too); the action must be allowed under each of them.
   */
  async authorize(ctx: Ctx, route: MatchedRoute, aliases: (repo: string) => string[]): Promise<void> {
    const who = await this.identify(ctx);
    ctx.state.identity = who;
    ctx.state.require = (repo: string, action: Action) => {
      for (const name of aliases(repo)) this.require(who, name, action);
    };
    ctx.state.canRead = (repo: string) =>
      aliases(repo).every((name) => this.policy.allowed(who, name, "read"));
    switch (route.action) {
      case "none":
        // `docker login` relies on /v2/ refusing anonymous callers where accounts exist.
        if (!who && this.accounts) throw this.unauthorized("authentication required");
        return;
      case "list":
        if (!this.policy.mayReadSomewhere(who)) {
          if (!who && this.accounts) throw this.unauthorized("authentication required");
          throw new RegistryError("DENIED", "no repository may be read");
        }
        return;
      case "handler":
        // Refuse before the body is read when neither a new tag nor a moved one could be allowed.
        if (!aliases(route.repo).every((name) => this.policy.allowed(who, name, "update")))
          ctx.state.require(route.repo, "create");
        return;
      default:
        ctx.state.require(route.repo, route.action);
    }
  }
}
