import type { SyncContent, SyncRegistryConfig } from "../config/config.ts";
import { globMatch } from "../config/glob.ts";
import { RegistryError } from "../oci/errors.ts";

/** Where a local repository comes from: which upstream, under which name, by which content rule. */
export interface UpstreamRoute {
  registry: SyncRegistryConfig;
  /** Position in `extensions.sync.registries`. */
  index: number;
  upstreamRepo: string;
  content?: SyncContent;
}

const trimSlashes = (s: string) => s.replace(/^\/+|\/+$/g, "");
/** zot trims both slashes and stars off a prefix to get its literal part ("/repo3/**" → "repo3"). */
const literalPrefix = (prefix: string) => prefix.replace(/^[/*]+|[/*]+$/g, "");

/** The glob part of a prefix: what follows the last `/` before the first glob character. */
function globPart(prefix: string): string {
  const p = `${trimSlashes(prefix)}/`;
  const firstMeta = p.search(/[*?[{\\]/);
  if (firstMeta < 0) return "";
  const cut = p.lastIndexOf("/", firstMeta);
  return trimSlashes(p.slice(cut + 1));
}

/** The local name a content rule gives an upstream repository (zot's destination and stripPrefix). */
export function localName(upstreamRepo: string, content: SyncContent): string {
  const remote = trimSlashes(upstreamRepo);
  const destination = trimSlashes(content.destination ?? "");
  const rest = content.stripPrefix ? trimSlashes(remote.slice(literalPrefix(content.prefix).length)) : remote;
  return trimSlashes([destination, rest].filter((s) => s !== "").join("/"));
}

/** The inverse: the upstream name of a local repository under a content rule, or undefined when it does not match. */
export function upstreamName(localRepo: string, content: SyncContent): string | undefined {
  const local = trimSlashes(localRepo);
  const destination = trimSlashes(content.destination ?? "");
  const pattern = trimSlashes(
    [destination, content.stripPrefix ? globPart(content.prefix) : trimSlashes(content.prefix)]
      .filter((s) => s !== "")
      .join("/"),
  );
  if (pattern === "" ? local !== "" && destination !== "" : !globMatch(pattern, local)) return undefined;
  let rest = local;
  if (destination !== "") rest = trimSlashes(rest.slice(destination.length));
  const upstream = content.stripPrefix ? trimSlashes(`${literalPrefix(content.prefix)}/${rest}`) : rest;
  return upstream === "" ? undefined : upstream;
}

/** Whether an upstream repository is selected by a registry's content rules (periodic sync). */
export function contentFor(upstreamRepo: string, registry: SyncRegistryConfig): SyncContent | undefined {
  return registry.content.find((c) => globMatch(trimSlashes(c.prefix), trimSlashes(upstreamRepo)));
}

/** Hosts that are one registry under several names, as containerd's `ns` and docker's config use them. */
function canonicalHost(host: string): string {
  const h = host.toLowerCase();
  if (h === "docker.io" || h === "index.docker.io" || h === "registry-1.docker.io") return "docker.io";
  return h;
}

export function registryHosts(registry: SyncRegistryConfig): string[] {
  return registry.urls.map((u) => canonicalHost(new URL(u).host));
}

/** Whether an on-demand upstream is configured for a host (containerd's `ns`). */
export function pullsFromHost(registries: SyncRegistryConfig[], host: string): boolean {
  const h = canonicalHost(host);
  return registries.some((r) => r.onDemand && registryHosts(r).includes(h));
}

/**
 * Candidate upstreams for a local repository, in configuration order. With containerd's `ns`,
 * only the registries whose URL has that host qualify, and the name is the upstream name as is.
 */
export function routesFor(
  registries: SyncRegistryConfig[],
  localRepo: string,
  opts: { onDemandOnly?: boolean; ns?: string } = {},
): UpstreamRoute[] {
  const routes: UpstreamRoute[] = [];
  registries.forEach((registry, index) => {
    if (opts.onDemandOnly && !registry.onDemand) return;
    if (opts.ns !== undefined) {
      if (!registryHosts(registry).includes(canonicalHost(opts.ns))) return;
      const content = registry.content.length === 0 ? undefined : contentFor(localRepo, registry);
      if (registry.content.length > 0 && !content) return;
      routes.push(
        content
          ? { registry, index, upstreamRepo: localRepo, content }
          : { registry, index, upstreamRepo: localRepo },
      );
      return;
    }
    if (registry.content.length === 0) {
      routes.push({ registry, index, upstreamRepo: localRepo });
      return;
    }
    for (const content of registry.content) {
      const upstreamRepo = upstreamName(localRepo, content);
      if (upstreamRepo !== undefined && globMatch(trimSlashes(content.prefix), upstreamRepo)) {
        routes.push({ registry, index, upstreamRepo, content });
        return;
      }
    }
  });
  return routes;
}

/**
 * The first path component under which containerd's `ns` requests for a host are stored: the
 * host itself (a port joined with `-`, as `:` cannot appear in a repository name).
 */
export function nsComponent(host: string): string {
  return canonicalHost(host).replace(/:(\d+)$/, "-$1");
}

/**
 * Where containerd's `ns` requests are stored locally: under the upstream host, so registries never
 * collide. This holds whether or not an upstream is configured for the host, so an `ns` request can
 * only ever reach content stored or fetched for that host.
 */
export function nsLocalName(ns: string, repo: string): string {
  return `${nsComponent(ns)}/${repo}`;
}

/** containerd's `ns` names a registry host, with an optional port; anything else is refused, not guessed at. */
export function assertNsHost(ns: string): string {
  if (/^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})(?::\d{1,5})?$/.test(ns)) return ns;
  throw new RegistryError(
    "NAME_INVALID",
    `ns=${JSON.stringify(ns.slice(0, 100))} is not a registry host[:port]`,
    {
      detail: { ns: ns.slice(0, 100) },
    },
  );
}

/** The reverse of nsLocalName for configured upstreams: the host and upstream repository, if `localRepo` is one. */
export function splitNsLocalName(
  registries: SyncRegistryConfig[],
  localRepo: string,
): { host: string; repo: string } | undefined {
  const slash = localRepo.indexOf("/");
  if (slash < 0) return undefined;
  const first = localRepo.slice(0, slash);
  for (const r of registries) {
    for (const host of registryHosts(r)) {
      if (nsComponent(host) === first) return { host, repo: localRepo.slice(slash + 1) };
    }
  }
  return undefined;
}

/**
 * The upstreams that may answer for a local repository, in configuration order. A name under a
 * configured upstream's host (`docker.io/library/alpine`, what containerd's `ns` maps to) reaches
 * that host's registries only: a catch-all elsewhere would look the host-prefixed name up at
 * another registry. Any other name reaches the registries whose content rules match it.
 */
export function routesForLocal(registries: SyncRegistryConfig[], localRepo: string): UpstreamRoute[] {
  const ns = splitNsLocalName(registries, localRepo);
  if (ns) return routesFor(registries, ns.repo, { ns: ns.host, onDemandOnly: true });
  return routesFor(registries, localRepo, { onDemandOnly: true });
}

/** The local names under which a registry's content rules place an upstream repository. */
function bareNames(route: UpstreamRoute): string[] {
  if (route.registry.content.length === 0) return [route.upstreamRepo];
  const names: string[] = [];
  for (const content of route.registry.content) {
    if (!globMatch(trimSlashes(content.prefix), trimSlashes(route.upstreamRepo))) continue;
    const name = localName(route.upstreamRepo, content);
    if (name !== "") names.push(name);
  }
  return names;
}

/**
 * Every local name that reaches the same upstream content as `localRepo`: the name itself, the
 * host-prefixed name of each upstream host (containerd's `ns`), and the name the content rules
 * give it. Access rules must allow a request under all of them, or a second name would sidestep them.
 */
export function aliasesOf(registries: SyncRegistryConfig[], localRepo: string): string[] {
  const names = new Set([localRepo]);
  for (const route of routesForLocal(registries, localRepo)) {
    const candidates = [
      ...registryHosts(route.registry).map((host) => nsLocalName(host, route.upstreamRepo)),
      ...bareNames(route),
    ];
    for (const name of candidates) {
      // Only a name that is routed to this very upstream repository reaches the same content.
      const reaches = routesForLocal(registries, name).some(
        (r) => r.index === route.index && r.upstreamRepo === route.upstreamRepo,
      );
      if (reaches) names.add(name);
    }
  }
  return [...names];
}
