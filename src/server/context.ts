import type { Context } from "koa";
import type { Logger } from "pino";
import type { Action, Identity } from "../auth/policy.ts";
import type { KagamiConfig } from "../config/config.ts";
import type { PrometheusMetrics } from "../metrics/prometheus.ts";
import type { RedirectRules } from "../redirect/rules.ts";
import type { Stores } from "../registry/stores.ts";
import type { Mirror } from "../sync/mirror.ts";
import type { SyncScheduler } from "../sync/scheduler.ts";
import type { AccessState } from "./access.ts";
import type { ArtifactService } from "./artifacts-service.ts";
import type { Health } from "./health.ts";
import type { Endpoint } from "./routes.ts";

export interface AppDeps {
  /** The local stores; `stores.for(repo)` is the one that holds a repository. */
  stores: Stores;
  config: KagamiConfig;
  logger: Logger;
  /** The access rules in force now (they change when the config file does). */
  access: () => AccessState;
  /** Pull-through from `extensions.sync`, when configured (replaced when the config file changes). */
  mirror: () => Mirror | undefined;
  sync: () => SyncScheduler | undefined;
  /** `extensions.redirect` in mirror mode: blob reads sent to a copy near the client. */
  redirects?: RedirectRules;
  /** Release files (`extensions.artifacts`), mounted under `artifacts.prefix` when that is set. */
  artifacts?: ArtifactService;
  metrics: PrometheusMetrics;
  health: Health;
}

export interface RouteState {
  repo: string;
  /** The captured reference, digest or upload id, by route. */
  ref: string;
  identity: Identity;
  /** Throws 401/403 unless the caller may do `action` in `repo`. */
  require: (repo: string, action: Action) => void;
  canRead: (repo: string) => boolean;
  /** The pull-through that answers what the local store lacks, when `extensions.sync` is configured. */
  mirror: Mirror | undefined;
  /** The matched endpoint, once dispatch found one (request metrics read it). */
  endpoint?: Endpoint;
}

export type Ctx = Context & { state: RouteState };

export function setHeaders(ctx: Ctx, headers: Record<string, string | number>): void {
  for (const [k, v] of Object.entries(headers)) ctx.set(k, String(v));
}

/** An empty response with `status`: Koa would otherwise turn a null body into 204 or a text body. */
export function emptyResponse(ctx: Ctx, status: number): void {
  ctx.body = null;
  ctx.status = status;
}
