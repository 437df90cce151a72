/**
 * Every endpoint of the API in one table: its path pattern, method, and the access it needs.
 * Access control (a later layer) reads `action` from here, so no endpoint can be forgotten.
 */
import type { Action } from "../auth/policy.ts";

/**
 * `list`: filtered per repository by the handler; `handler`: the handler decides (a manifest PUT
 * needs create for a new tag and update to move one); `none`: no repository involved.
 */
export type RouteAction = Action | "none" | "list" | "handler";

export type Endpoint =
  | "base"
  | "catalog"
  | "tags"
  | "manifest.head"
  | "manifest.get"
  | "manifest.put"
  | "manifest.delete"
  | "blob.head"
  | "blob.get"
  | "blob.delete"
  | "upload.start"
  | "upload.status"
  | "upload.patch"
  | "upload.finish"
  | "upload.cancel"
  | "referrers";

interface Route {
  pattern: RegExp;
  methods: Partial<Record<string, { endpoint: Endpoint; action: RouteAction }>>;
}

export const routes: Route[] = [
  { pattern: /^\/v2\/?$/, methods: { GET: { endpoint: "base", action: "none" } } },
  { pattern: /^\/v2\/_catalog\/?$/, methods: { GET: { endpoint: "catalog", action: "list" } } },
  {
    pattern: /^\/v2\/(.+)\/blobs\/uploads\/?$/,
    methods: { POST: { endpoint: "upload.start", action: "create" } },
  },
  {
    pattern: /^\/v2\/(.+)\/blobs\/uploads\/([^/]+)$/,
    methods: {
      GET: { endpoint: "upload.status", action: "create" },
      PATCH: { endpoint: "upload.patch", action: "create" },
      PUT: { endpoint: "upload.finish", action: "create" },
      DELETE: { endpoint: "upload.cancel", action: "create" },
    },
  },
  {
    pattern: /^\/v2\/(.+)\/manifests\/([^/]+)$/,
    methods: {
      HEAD: { endpoint: "manifest.head", action: "read" },
      GET: { endpoint: "manifest.get", action: "read" },
      PUT: { endpoint: "manifest.put", action: "handler" },
      DELETE: { endpoint: "manifest.delete", action: "delete" },
    },
  },
  {
    pattern: /^\/v2\/(.+)\/blobs\/([^/]+)$/,
    methods: {
      HEAD: { endpoint: "blob.head", action: "read" },
      GET: { endpoint: "blob.get", action: "read" },
      DELETE: { endpoint: "blob.delete", action: "delete" },
    },
  },
  { pattern: /^\/v2\/(.+)\/tags\/list\/?$/, methods: { GET: { endpoint: "tags", action: "read" } } },
  {
    pattern: /^\/v2\/(.+)\/referrers\/([^/]+)$/,
    methods: { GET: { endpoint: "referrers", action: "read" } },
  },
];

export interface MatchedRoute {
  endpoint: Endpoint;
  action: RouteAction;
  repo: string;
  ref: string;
}

export type MatchResult =
  | { kind: "ok"; route: MatchedRoute }
  | { kind: "method"; allow: string[] }
  | { kind: "none" };

export function matchRoute(method: string, path: string): MatchResult {
  for (const route of routes) {
    const m = route.pattern.exec(path);
    if (!m) continue;
    // HEAD is a GET without a body wherever the table names no HEAD of its own.
    const entry = route.methods[method] ?? (method === "HEAD" ? route.methods.GET : undefined);
    if (!entry) {
      return { kind: "method", allow: Object.keys(route.methods) };
    }
    return { kind: "ok", route: { ...entry, repo: m[1] ?? "", ref: m[2] ?? "" } };
  }
  return { kind: "none" };
}
