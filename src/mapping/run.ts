import { type CopyEvent, type CopyResult, copyImage } from "../copy/copy.ts";
import { Limiter } from "../copy/limit.ts";
import type { PlatformFilter } from "../copy/platform.ts";
import { OciLayout } from "../layout/layout.ts";
import type { Places } from "./places.ts";
import type { ImageJob, Plan } from "./plan.ts";
import { formatMirrorRef, locationKey, placeKey } from "./reference.ts";

export interface RunOptions {
  platforms: PlatformFilter;
  keepManifestList: boolean;
  skipMount: boolean;
  continueOnError: boolean;
  /** Destination registries worked on at once (oc's --max-registry, 4). */
  maxRegistry: number;
  /** Images and blob transfers at once per destination registry (oc's --max-per-registry, 6). */
  maxPerRegistry: number;
  retries: number;
  /** `<digest> <dst>:<tag>` per pushed tag. */
  onPushed: (line: string) => void;
  onImageDone?: (job: ImageJob, result: CopyResult) => void;
  onEvent?: (job: ImageJob, event: CopyEvent) => void;
}

export interface RunSummary {
  images: number;
  failed: number;
  /** Not started because an earlier image failed (no --continue-on-error). */
  notStarted: number;
  blobsCopied: number;
  blobsMounted: number;
  blobsPresent: number;
  bytes: number;
  errors: string[];
}

/**
 * Copies the planned images: destination registries in parallel up to maxRegistry, within each
 * up to maxPerRegistry images and blob transfers sharing one limiter. Children go before their
 * index (the copy engine's order); layouts and archives take one image at a time.
 */
export async function runPlan(plan: Plan, places: Places, opts: RunOptions): Promise<RunSummary> {
  const summary: RunSummary = {
    images: 0,
    failed: 0,
    notStarted: 0,
    blobsCopied: 0,
    blobsMounted: 0,
    blobsPresent: 0,
    bytes: 0,
    errors: [],
  };
  const todo = plan.jobs.filter((j) => j.tags.length > 0 || j.byDigest);
  const groups = new Map<string, ImageJob[]>();
  for (const j of todo) {
    const key = placeKey(j.dst);
    groups.set(key, [...(groups.get(key) ?? []), j]);
  }
  let stopped = false;
  const registries = new Limiter(opts.maxRegistry);
  await Promise.all(
    [...groups.values()].map((jobs) =>
      registries.run(async () => {
        const oneAtATime = jobs[0]!.dst.kind === "oci" || jobs[0]!.dst.kind === "oci-archive";
        const images = new Limiter(oneAtATime ? 1 : opts.maxPerRegistry);
        const blobs = new Limiter(opts.maxPerRegistry);
        await Promise.all(
          jobs.map((job) =>
            images.run(async () => {
              if (stopped) {
                summary.notStarted++;
                return;
              }
              try {
                const result = await copyJob(job, places, opts, blobs);
                summary.images++;
                summary.blobsCopied += result.blobs.copied;
                summary.blobsMounted += result.blobs.mounted;
                summary.blobsPresent += result.blobs.skipped;
                summary.bytes += result.bytesCopied;
                opts.onImageDone?.(job, result);
              } catch (err) {
                summary.failed++;
                const where = job.origins.length ? `${job.origins.join("; ")}: ` : "";
                summary.errors.push(`${where}${(err as Error)?.message ?? String(err)}`);
                if (!opts.continueOnError) stopped = true;
              }
            }),
          ),
        );
      }),
    ),
  );
  return summary;
}

async function copyJob(job: ImageJob, places: Places, opts: RunOptions, blobs: Limiter): Promise<CopyResult> {
  const src = await places.open(job.src.location, "source");
  const dst = await places.open(job.dst, "destination");
  const result = await copyImage(
    { ...src, reference: job.src.digest, name: job.srcName },
    { ...dst, tags: job.tags, name: locationKey(job.dst) },
    {
      platforms: opts.platforms,
      keepIndex: opts.keepManifestList,
      skipMount: opts.skipMount,
      limiter: blobs,
      retries: opts.retries,
      onEvent: (e) => opts.onEvent?.(job, e),
    },
  );
  if (job.tags.length === 0 && dst.registry instanceof OciLayout) {
    await dst.registry.addUntagged({ mediaType: result.mediaType, digest: result.digest, size: result.size });
  }
  for (const tag of job.tags)
    opts.onPushed(`${result.digest} ${formatMirrorRef({ location: job.dst, tag })}`);
  if (job.tags.length === 0) opts.onPushed(`${result.digest} ${locationKey(job.dst)}`);
  return result;
}
