import { type CopyResult, copyImage } from "../copy/copy.ts";
import type { PlatformFilter } from "../copy/platform.ts";
import { isDigest } from "../oci/digest.ts";
import { isValidName, isValidTag } from "../oci/names.ts";
import type { BasicCredentials } from "../remote/credentials.ts";
import type { RedirectHop } from "../remote/http.ts";
import { type Connection, openClient } from "./client.ts";
import { NullRegistry } from "./null-sink.ts";
import { type BlobSource, formatBytes, type ImageResult } from "./report.ts";

/** An `--image` that names no repository of the registry under test. */
export class ImageArgumentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageArgumentError";
  }
}

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
  let reference = "latest";
  const at = rest.indexOf("@");
  if (at >= 0) {
    reference = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(reference)) throw new ImageArgumentError(`--image ${text}: '${reference}' is not a digest`);
  } else {
    const colon = rest.lastIndexOf(":");
    if (colon > rest.lastIndexOf("/")) {
      reference = rest.slice(colon + 1);
      rest = rest.slice(0, colon);
      if (!isValidTag(reference))
        throw new ImageArgumentError(`--image ${text}: '${reference}' is not a valid tag`);
    }
  }
  if (!isValidName(rest)) {
    throw new ImageArgumentError(
      `--image ${text}: '${rest}' is not a repository name (lowercase path, e.g. pause:3.10 or kube-apiserver@sha256:...)`,
    );
  }
  return { text, repo: rest, reference };
}

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
  try {
    copied = await copyImage(
      { registry: remote, repo: image.repo, reference: image.reference },
      { registry: new NullRegistry(), repo: image.repo, tags: [] },
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
  } catch (err) {
    result.message = (err as Error).message ?? String(err);
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
  result.status = "pass";
  result.digest = copied.sourceDigest;
  result.platforms = copied.platforms;
  const platforms = copied.platforms.length ? `${copied.platforms.length} platforms, ` : "";
  result.message = `${copied.sourceDigest}: ${platforms}${manifests} manifests, ${sizes.size} blobs (${formatBytes(result.bytes)}) verified`;
  return result;
}
