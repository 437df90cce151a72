import { type CopyResult, copyImage } from "../copy/copy.ts";
import { formatBytes } from "../copy/format.ts";
import type { PlatformFilter } from "../copy/platform.ts";
import type { BasicCredentials } from "../remote/credentials.ts";
import type { RedirectHop } from "../remote/http.ts";
import { manifestReference, parseImageReference } from "../remote/reference.ts";
import { type Connection, openClient } from "./client.ts";
import { NullRegistry } from "./null-sink.ts";
import type { BlobSource, ImageResult } from "./report.ts";

export interface ImageRef {
  /** As the person wrote it, for the report. */
  text: string;
  repo: string;
  /** Tag or digest. */
  reference: string;
}

/**
 * Reads `repo[:tag][@digest]`, relative to the registry under test; a leading `host/` naming that
 * registry (or registry.k8s.io, whose names a mirror serves unchanged) is dropped.
 */
export function parseImageArg(text: string, registryHost: string): ImageRef {
  let rest = text.trim();
  for (const prefix of [`${registryHost}/`, "registry.k8s.io/"]) {
    if (rest.startsWith(prefix)) rest = rest.slice(prefix.length);
  }
  // Under the registry's own host, so no Docker Hub rules (library/) apply.
  const ref = parseImageReference(`${registryHost}/${rest}`);
  return { text, repo: ref.repo, reference: manifestReference(ref) };
}

const sinkName = "the verifier";

export interface PullOptions {
  platforms: PlatformFilter;
  concurrency: number;
  credentials?: BasicCredentials;
}

/**
 * Pulls an image as a container runtime would, every manifest and blob of the platforms asked for,
 * verifying each digest and size, and keeps nothing. Redirected blob requests are followed and the
 * host each blob finally came from is recorded.
 */
export async function pullImage(c: Connection, image: ImageRef, opts: PullOptions): Promise<ImageResult> {
  const hops = new Map<string, string[]>();
  const onRedirect = (hop: RedirectHop) => {
    // A retried request starts its chain again.
    const chain = hop.from === hop.request ? [] : (hops.get(hop.request) ?? []);
    chain.push(hop.to);
    hops.set(hop.request, chain);
  };
  const remote = openClient(c, {
    onRedirect,
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
  });
  const registryHost = new URL(c.url).host;
  const sizes = new Map<string, number>();
  let manifests = 0;
  const result: ImageResult = {
    reference: image.text,
    status: "fail",
    message: "",
    platforms: [],
    manifests: 0,
    blobs: [],
    bytes: 0,
    blobHosts: {},
  };
  let copied: CopyResult | undefined;
  let headDigest: string | undefined;
  try {
    copied = await copyImage(
      { registry: remote, repo: image.repo, reference: image.reference, name: image.text },
      { registry: new NullRegistry(), repo: image.repo, tags: [], name: sinkName },
      {
        platforms: opts.platforms,
        concurrency: opts.concurrency,
        retries: c.retries,
        retryDelayMs: 200,
        onEvent: (e) => {
          if (e.type === "blob-done") sizes.set(e.digest, e.size);
          else if (e.type === "manifest") manifests++;
        },
      },
    );
    // containerd and docker resolve a tag with HEAD: it must name what GET serves.
    headDigest = (await remote.headManifest(image.repo, image.reference))?.digest;
  } catch (err) {
    // The copy names both ends; here only the cause matters.
    const text = (err as Error)?.message ?? String(err);
    const prefix = `copying ${image.text} to ${sinkName} failed: `;
    result.message = text.startsWith(prefix) ? text.slice(prefix.length) : text;
  } finally {
    await remote.close();
  }
  for (const [digest, size] of sizes) {
    const redirects = hops.get(`${c.url}/v2/${image.repo}/blobs/${digest}`) ?? [];
    const last = redirects.at(-1);
    const blob: BlobSource = { digest, size, host: last ? new URL(last).host : registryHost, redirects };
    result.blobs.push(blob);
    result.blobHosts[blob.host] = (result.blobHosts[blob.host] ?? 0) + 1;
    result.bytes += size;
  }
  result.manifests = manifests;
  if (!copied) return result;
  result.digest = copied.sourceDigest;
  result.platforms = copied.platforms;
  if (headDigest !== copied.sourceDigest) {
    result.message = `HEAD ${image.text} answers ${headDigest ?? "404"}, but GET serves ${copied.sourceDigest}: clients that resolve with HEAD (containerd, docker) get another image or none`;
    return result;
  }
  result.status = "pass";
  const platforms = copied.platforms.length ? `${copied.platforms.length} platforms, ` : "";
  result.message = `${copied.sourceDigest}: ${platforms}${manifests} manifests, ${sizes.size} blobs (${formatBytes(result.bytes)}) verified`;
  return result;
}
