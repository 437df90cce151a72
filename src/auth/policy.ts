import picomatch from "picomatch";

export type Action = "read" | "create" | "update" | "delete";
export const allActions: readonly Action[] = ["read", "create", "update", "delete"];

/** zot's `http.accessControl`, as written in the config. */
export interface AccessControlConfig {
  groups?: Record<string, { users?: string[] }>;
  repositories?: Record<string, RepoPolicyConfig>;
  adminPolicy?: { users?: string[]; groups?: string[]; actions?: Action[] };
  /** Who may read the metrics endpoint, as zot's `accessControl.metrics`. */
  metrics?: { users?: string[]; anonymousPolicy?: Action[] };
}

export interface RepoPolicyConfig {
  policies?: { users?: string[]; groups?: string[]; actions?: Action[] }[];
  defaultPolicy?: Action[];
  anonymousPolicy?: Action[];
}

interface CompiledRepo {
  pattern: string;
  match: (repo: string) => boolean;
  policy: RepoPolicyConfig;
}

/** Who is asking: a user name, or nobody. */
export type Identity = { user: string } | undefined;

/**
 * Decides what a caller may do in a repository. Without access control: with accounts configured,
 * authenticated users may do everything and anonymous callers nothing; with no accounts, everyone
 * may do everything.
 */
export class AccessPolicy {
  private readonly repos: CompiledRepo[];
  private readonly userGroups = new Map<string, Set<string>>();

  constructor(
    private readonly acl: AccessControlConfig | undefined,
    readonly authEnabled: boolean,
  ) {
    this.repos = Object.entries(acl?.repositories ?? {})
      .map(([pattern, policy]) => ({ pattern, match: picomatch(pattern, { dot: true }), policy }))
      // The longest matching pattern wins, as in zot.
      .sort((a, b) => b.pattern.length - a.pattern.length);
    for (const [group, def] of Object.entries(acl?.groups ?? {})) {
      for (const user of def.users ?? []) {
        if (!this.userGroups.has(user)) this.userGroups.set(user, new Set());
        this.userGroups.get(user)!.add(group);
      }
    }
  }

  private inPolicy(user: string, p: { users?: string[]; groups?: string[] }): boolean {
    if (p.users?.includes(user)) return true;
    const groups = this.userGroups.get(user);
    return !!groups && !!p.groups?.some((g) => groups.has(g));
  }

  private isAdmin(user: string, action: Action): boolean {
    const admin = this.acl?.adminPolicy;
    return !!admin && this.inPolicy(user, admin) && !!admin.actions?.includes(action);
  }

  allowed(who: Identity, repo: string, action: Action): boolean {
    return this.allowedUnder(who, [repo], action);
  }

  /**
   * The decision for content that is reachable under several names (a mirrored repository): the
   * most specific pattern matching any of the names decides for all of them, as the longest
   * matching pattern decides for one name; equally specific patterns of different names must each
   * allow. So no name can open what a more specific rule for another name closes.
   */
  allowedUnder(who: Identity, names: readonly string[], action: Action): boolean {
    if (!this.acl) return who !== undefined || !this.authEnabled;
    if (who && this.isAdmin(who.user, action)) return true;
    let deciding: CompiledRepo[] = [];
    for (const name of names) {
      const entry = this.repos.find((r) => r.match(name));
      if (!entry) continue;
      const longest = deciding[0]?.pattern.length ?? -1;
      if (entry.pattern.length > longest) deciding = [entry];
      else if (entry.pattern.length === longest && !deciding.includes(entry)) deciding.push(entry);
    }
    return deciding.length > 0 && deciding.every(({ policy }) => this.grants(policy, who, action));
  }

  private grants(policy: RepoPolicyConfig, who: Identity, action: Action): boolean {
    if (!who) return !!policy.anonymousPolicy?.includes(action);
    if (policy.policies?.some((p) => this.inPolicy(who.user, p) && p.actions?.includes(action))) return true;
    return !!policy.defaultPolicy?.includes(action);
  }

  /**
   * Whether the caller may read the metrics, as zot decides: without access control whoever got
   * past authentication may; with it, anonymous callers only under `metrics.anonymousPolicy: ["read"]`
   * and signed-in users only when `metrics.users` names them (admins included: zot grants them nothing here).
   */
  mayReadMetrics(who: Identity): boolean {
    if (!this.acl) return who !== undefined || !this.authEnabled;
    const m = this.acl.metrics;
    if (!who) return !!m?.anonymousPolicy?.includes("read");
    return !!m?.users?.includes(who.user);
  }

  /** Whether the caller may read anything at all: decides 401 versus an empty list on `_catalog` and `/v2/`. */
  mayReadSomewhere(who: Identity): boolean {
    if (!this.acl) return who !== undefined || !this.authEnabled;
    if (who && this.isAdmin(who.user, "read")) return true;
    return this.repos.some(({ policy }) =>
      who
        ? policy.defaultPolicy?.includes("read") ||
          policy.policies?.some((p) => this.inPolicy(who.user, p) && p.actions?.includes("read"))
        : policy.anonymousPolicy?.includes("read"),
    );
  }
}

/** zot also accepts repository patterns directly under `accessControl` (its older form). */
export function normalizeAccessControl(raw: Record<string, unknown>): AccessControlConfig {
  const reserved = new Set(["groups", "repositories", "adminPolicy", "metrics"]);
  const repositories: Record<string, RepoPolicyConfig> = {
    ...((raw.repositories as Record<string, RepoPolicyConfig> | undefined) ?? {}),
  };
  for (const [k, v] of Object.entries(raw)) if (!reserved.has(k)) repositories[k] = v as RepoPolicyConfig;
  const out: AccessControlConfig = { repositories };
  if (raw.groups) out.groups = raw.groups as AccessControlConfig["groups"];
  if (raw.adminPolicy) out.adminPolicy = raw.adminPolicy as AccessControlConfig["adminPolicy"];
  if (raw.metrics) out.metrics = raw.metrics as AccessControlConfig["metrics"];
  return out;
}
