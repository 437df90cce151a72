import { existsSync } from "node:fs";
import { join } from "node:path";
import { filteredIndex } from "../copy/copy.ts";
import { Limiter } from "../copy/limit.ts";
import { filterMatches, formatPlatform, type PlatformFilter } from "../copy/platform.ts";
import { digestOf } from "../oci/digest.ts";
import { RegistryError } from "../oci/errors.ts";
import { parseManifest } from "../oci/manifest.ts";
import type { Mapping } from "./mappings.ts";
import { isNotFound, type Places } from "./places.ts";
import { formatMirrorRef, locationKey, type MirrorLocation, type MirrorRef, placeKey } from "./reference.ts";

export interface PlanOptions {
  platforms: PlatformFilter;
  keepManifestList: boolean;
  force: boolean;
  skipMissing: boolean;
  /** Requests at once to one registry while planning (--max-per-registry). */
  maxPerRegistry: number;
}

/** One image to write to one destination repository, under zero or more tags. */
export interface ImageJob {
  /** The source pinned by digest. */
  src: MirrorRef & { digest: string };
  /** How the mapping named the source (a tag, usually). */
  srcName: string;
  dst: MirrorLocation;
  /** Tags to write; empty with `byDigest`: the image is pushed by digest only. */
  tags: string[];
  byDigest: boolean;
  /** Tags that already point at the image (left alone unless --force). */
  present: string[];
  /** What the destination will hold: the source digest, or a filtered one. */
  targetDigest: string;
  /** Platforms copied from an index (empty for a single image). */
  platforms: string[];
  origins: string[];
}

export interface Plan {
  jobs: ImageJob[];
  /** Problems that stop the run (unless --continue-on-error), each naming the mapping. */
  errors: string[];
  warnings: string[];
}

interface Resolved {
  digest: string;
  targetDigest: string;
  platforms: string[];
}

/** Resolves every source to a digest and looks at what each destination already has. */
export async function makePlan(mappings: Mapping[], places: Places, opts: PlanOptions): Promise<Plan> {
  const plan: Plan = { jobs: [], errors: [], warnings: [] };
  const limiters = new Map<string, Limiter>();
  const limit = <T>(l: MirrorLocation, fn: () => Promise<T>): Promise<T> => {
    const key = placeKey(l);
    let lim = limiters.get(key);
    if (!lim) {
      lim = new Limiter(opts.maxPerRegistry);
      limiters.set(key, lim);
    }
    return lim.run(fn);
  };

  const sources = new Map<string, Promise<Resolved | undefined>>();
  const resolveSource = (src: MirrorRef): Promise<Resolved | undefined> => {
    const key = `${locationKey(src.location)} ${src.digest ?? src.tag}`;
    let r = sources.get(key);
    if (!r) {
      r = limit(src.location, () => resolve(src, places, opts));
      sources.set(key, r);
    }
    return r;
  };

  const jobs = new Map<string, ImageJob>();
  await Promise.all(
    mappings.map(async (m) => {
      const where = m.origin ? `${m.origin}: ` : "";
      let resolved: Resolved | undefined;
      try {
        resolved = await resolveSource(m.src);
      } catch (err) {
        if (opts.skipMissing && isNotFound(err)) {
          plan.warnings.push(
            `${where}image ${formatMirrorRef(m.src)} does not exist and will not be mirrored`,
          );
        } else {
          plan.errors.push(
            `${where}unable to retrieve source image ${formatMirrorRef(m.src)}: ${message(err)}`,
          );
        }
        return;
      }
      if (!resolved) {
        plan.warnings.push(`${where}filtered all images from ${formatMirrorRef(m.src)}, skipping`);
        return;
      }
      const key = `${locationKey(m.src.location)} ${resolved.digest} ${locationKey(m.dst.location)}`;
      let job = jobs.get(key);
      if (!job) {
        job = {
          src: { location: m.src.location, digest: resolved.digest },
          srcName: formatMirrorRef(m.src),
          dst: m.dst.location,
          tags: [],
          byDigest: false,
          present: [],
          targetDigest: resolved.targetDigest,
          platforms: resolved.platforms,
          origins: [],
        };
        jobs.set(key, job);
      }
      if (m.origin && !job.origins.includes(m.origin)) job.origins.push(m.origin);
      const there = await limit(m.dst.location, () =>
        destinationDigest(places, m.dst.location, m.dst.tag ?? resolved.targetDigest),
      );
      const have = there === resolved.targetDigest && !opts.force;
      if (m.dst.tag) (have ? job.present : job.tags).push(m.dst.tag);
      else if (!have) job.byDigest = true;
    }),
  );
  // One source line with several destinations resolves once; say its failure once too.
  plan.errors = [...new Set(plan.errors)];
  plan.warnings = [...new Set(plan.warnings)];
  // Mappings resolve concurrently, so tags arrive in any order: sort them for a stable plan.
  for (const j of jobs.values()) {
    j.tags.sort();
    j.present.sort();
  }
  plan.jobs = [...jobs.values()].sort((a, b) =>
    `${locationKey(a.dst)} ${a.srcName}`.localeCompare(`${locationKey(b.dst)} ${b.srcName}`),
  );
  return plan;
}

/** The source's digest, and what a platform filter makes of it; undefined: the filter left nothing. */
async function resolve(src: MirrorRef, places: Places, opts: PlanOptions): Promise<Resolved | undefined> {
  const { registry, repo } = await places.open(src.location, "source");
  const reference = src.digest ?? src.tag ?? "latest";
  const m = await registry.getManifest(repo, reference);
  if (!m) throw notFound(reference);
  const digest = src.digest ?? digestOf(m.bytes);
  const parsed = parseManifest(m.bytes, m.mediaType);
  if (parsed.kind !== "index") return { digest, targetDigest: digest, platforms: [] };
  const wanted = parsed.manifests.filter((c) => filterMatches(opts.platforms, c.platform));
  const platforms = wanted.map((c) => formatPlatform(c.platform));
  if (wanted.length === 0) return undefined;
  if (wanted.length === parsed.manifests.length) return { digest, targetDigest: digest, platforms };
  if (wanted.length === 1 && !opts.keepManifestList) {
    return { digest, targetDigest: wanted[0]!.digest, platforms };
  }
  const bytes = filteredIndex(
    m.bytes,
    wanted.map((c) => c.digest),
  );
  return { digest, targetDigest: digestOf(bytes), platforms };
}

function notFound(reference: string): RegistryError {
  return new RegistryError("MANIFEST_UNKNOWN", `manifest ${reference} is not there`);
}

async function destinationDigest(
  places: Places,
  l: MirrorLocation,
  reference: string,
): Promise<string | undefined> {
  // An archive is written afresh, and opening a layout that is not there would create it.
  if (l.kind === "oci-archive") return undefined;
  if (l.kind === "oci" && !existsSync(join(l.path, "index.json"))) return undefined;
  try {
    const { registry, repo } = await places.open(l, "destination");
    return (await registry.headManifest(repo, reference))?.digest;
  } catch {
    // Not readable (a repository not created yet, an archive being written): nothing to skip.
    return undefined;
  }
}

function message(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}

/** The plan as oc prints it, grouped by destination: what is written and what is already there. */
export function formatPlan(plan: Plan): string {
  const lines: string[] = [];
  let place = "";
  let repo = "";
  for (const j of plan.jobs) {
    const p = placeKey(j.dst);
    if (p !== place) {
      lines.push(`${p}${p.endsWith("/") ? "" : "/"}`);
      place = p;
      repo = "";
    }
    const r = locationKey(j.dst);
    if (r !== repo) {
      lines.push(`  ${r}`);
      repo = r;
    }
    const what = j.tags.length ? `-> ${j.tags.join(", ")}` : j.byDigest ? "-> (by digest)" : "";
    const had = j.present.length ? `${what ? " " : ""}(already there: ${j.present.join(", ")})` : "";
    const filtered = j.targetDigest !== j.src.digest ? ` as ${j.targetDigest}` : "";
    const platforms = j.platforms.length ? ` [${j.platforms.join(", ")}]` : "";
    lines.push(`    ${j.src.digest} ${what}${had}  from ${j.srcName}${filtered}${platforms}`);
  }
  return lines.join("\n");
}
