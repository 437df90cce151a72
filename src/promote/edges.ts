import type { PromoterManifest } from "./manifest.ts";

/** Where a registry name points: a host and a path below it (`us.gcr.io/k8s-artifacts-prod/foo`). */
export interface RegistryLocation {
  host: string;
  prefix: string;
}

// A host name or IPv4 address, or a bracketed IPv6 address, and an optional port.
const hostPattern =
  /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/i;

/**
 * Why a registry name (`HOST[:PORT][/PATH]`) cannot be used, or undefined. A scheme, an empty or
 * dot path component would otherwise become a nonsensical host or a URL path that normalises
 * to some other repository.
 */
export function registryNameProblem(name: string): string | undefined {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(name))
    return `'${name}' is not a registry: leave out the scheme (HOST[:PORT][/PATH])`;
  const [host = "", ...path] = name.split("/");
  if (!hostPattern.test(host)) return `'${name}' is not a registry: '${host}' is not a HOST[:PORT]`;
  const port = /:(\d+)$/.exec(host)?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    return `'${name}' is not a registry: port ${port} is out of range`;
  }
  if (path.some((c) => c === "" || c === "." || c === ".." || /\s/.test(c))) {
    return `'${name}' is not a registry: its path has an empty, '.' or '..' component or a space`;
  }
  return undefined;
}

export function locateRegistry(name: string): RegistryLocation {
  const slash = name.indexOf("/");
  return slash < 0
    ? { host: name, prefix: "" }
    : { host: name.slice(0, slash), prefix: name.slice(slash + 1) };
}

/** The repository an image name means below a registry name. */
export function repositoryIn(registry: string, image: string): string {
  const { prefix } = locateRegistry(registry);
  return prefix ? `${prefix}/${image}` : image;
}

/** One promotion: SRC/name@digest → DST/name:tag (no tag: by digest only). */
export interface Edge {
  src: string;
  dst: string;
  name: string;
  digest: string;
  /** "" promotes by digest only. */
  tag: string;
  /** The manifest that asked for it, for messages. */
  file: string;
}

export function srcRef(e: Edge): string {
  return `${e.src}/${e.name}@${e.digest}`;
}

export function dstRef(e: Edge): string {
  return e.tag ? `${e.dst}/${e.name}:${e.tag}` : `${e.dst}/${e.name}@${e.digest}`;
}

/**
 * What an edge writes, as a key: host names are case-insensitive, so `GCR.io/p` and `gcr.io/p`
 * are one destination and two digests for one tag there must be caught as overlapping.
 */
function targetKey(e: Edge): string {
  const { host, prefix } = locateRegistry(e.dst);
  return dstRef({ ...e, dst: prefix ? `${host.toLowerCase()}/${prefix}` : host.toLowerCase() });
}

/** Two or more digests aimed at one destination tag. */
export class OverlappingEdgesError extends Error {
  constructor(readonly conflicts: { target: string; edges: Edge[] }[]) {
    const lines = conflicts.map(
      (c) =>
        `  ${c.target} is asked to be ${c.edges.map((e) => `${e.digest} (${e.file}, image ${e.name})`).join(" and ")}`,
    );
    super(
      `overlapping edges detected: different digests aimed at the same destination tag\n${lines.join("\n")}`,
    );
    this.name = "OverlappingEdgesError";
  }
}

/**
 * Every edge the manifests ask for: for each image, digest and tag, one per registry that is not
 * the source. The same edge asked twice counts once; two digests for one tag fail the run.
 */
export function toEdges(manifests: PromoterManifest[]): Edge[] {
  const edges = new Map<string, Edge>();
  for (const m of manifests) {
    for (const img of m.images) {
      for (const [digest, tags] of img.dmap) {
        for (const reg of m.registries) {
          if (reg === m.source) continue;
          for (const tag of tags.length ? tags : [""]) {
            const e: Edge = {
              src: m.source.name,
              dst: reg.name,
              name: img.name,
              digest,
              tag,
              file: m.imagesFile ?? m.file,
            };
            const key = `${targetKey(e)} ${e.digest}`;
            if (!edges.has(key)) edges.set(key, e);
          }
        }
      }
    }
  }
  const byTarget = new Map<string, Edge[]>();
  for (const e of edges.values()) {
    if (!e.tag) continue;
    const t = targetKey(e);
    byTarget.set(t, [...(byTarget.get(t) ?? []), e]);
  }
  const conflicts = [...byTarget]
    .filter(([, es]) => es.length > 1)
    .map(([, es]) => ({ target: dstRef(es[0] as Edge), edges: es }));
  if (conflicts.length) throw new OverlappingEdgesError(conflicts);
  return [...edges.values()];
}

/**
 * What the edges would put below `registry` if it were empty, read from the manifests alone: image
 * names relative to `registry`, so a destination deeper than it keeps the extra path.
 */
export function edgesInventory(edges: Edge[], registry: string): Map<string, Map<string, string[]>> {
  const root = registry.replace(/\/+$/, "");
  const inv = new Map<string, Map<string, string[]>>();
  for (const e of edges) {
    if (e.dst !== root && !e.dst.startsWith(`${root}/`)) continue;
    const name = `${e.dst.slice(root.length)}/${e.name}`.replace(/^\/+/, "");
    if (!inv.has(name)) inv.set(name, new Map());
    const dmap = inv.get(name) as Map<string, string[]>;
    const tags = dmap.get(e.digest) ?? [];
    if (e.tag && !tags.includes(e.tag)) tags.push(e.tag);
    dmap.set(e.digest, tags);
  }
  return inv;
}
