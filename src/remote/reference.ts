import { isDigest } from "../oci/digest.ts";
import { isValidName, isValidTag } from "../oci/names.ts";

/** A docker-style image reference: `[host[:port]/]path[:tag][@digest]`. */
export interface ImageReference {
  /** `host[:port]`; Docker Hub is `docker.io`. */
  host: string;
  /** Repository path on that host (Docker Hub's single names get `library/`). */
  repo: string;
  tag?: string;
  digest?: string;
}

export const dockerHubHost = "docker.io";
export const dockerHubRegistry = "registry-1.docker.io";

export function isDockerHub(host: string): boolean {
  const h = host.toLowerCase();
  return (
    h === "docker.io" ||
    h === "index.docker.io" ||
    h === "registry-1.docker.io" ||
    h === "registry.hub.docker.com"
  );
}

/** Whether the first path component names a registry host, docker's rule: it has a dot or a port, or is localhost. */
function looksLikeHost(component: string): boolean {
  return component.includes(".") || component.includes(":") || component === "localhost";
}

export class ImageReferenceError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ImageReferenceError";
  }
}

/**
 * Parses `[host[:port]/]path[:tag][@digest]` as docker does: no host means Docker Hub, a
 * single-component Hub name is under `library/`, neither tag nor digest means `latest`.
 */
export function parseImageReference(ref: string, opts: { defaultTag?: string | null } = {}): ImageReference {
  let rest = ref.trim();
  if (rest === "") throw new ImageReferenceError("empty image reference");
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) throw new ImageReferenceError(`'${ref}': '${digest}' is not a valid digest`);
  }
  let host = dockerHubHost;
  const slash = rest.indexOf("/");
  if (slash > 0 && looksLikeHost(rest.slice(0, slash))) {
    host = rest.slice(0, slash);
    rest = rest.slice(slash + 1);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) throw new ImageReferenceError(`'${ref}': '${tag}' is not a valid tag`);
  }
  let repo = rest;
  if (isDockerHub(host)) {
    host = dockerHubHost;
    if (!repo.includes("/")) repo = `library/${repo}`;
  }
  if (!isValidName(repo)) {
    throw new ImageReferenceError(
      `'${ref}': '${repo}' is not a valid repository name (lowercase letters, digits, separators . _ __ -, components joined by /)`,
    );
  }
  const defaultTag = opts.defaultTag === undefined ? "latest" : opts.defaultTag;
  if (tag === undefined && digest === undefined && defaultTag !== null) tag = defaultTag;
  const out: ImageReference = { host, repo };
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}

/** The manifest reference to ask for: the digest when there is one, else the tag. */
export function manifestReference(ref: ImageReference): string {
  return ref.digest ?? ref.tag ?? "latest";
}

export function formatImageReference(ref: ImageReference): string {
  return `${ref.host}/${ref.repo}${ref.tag ? `:${ref.tag}` : ""}${ref.digest ? `@${ref.digest}` : ""}`;
}

/**
 * Base URLs for a registry host: Docker Hub's API host for `docker.io`; https, and with TLS
 * verification off plain http as a fallback, as containers/image does for insecure registries.
 */
export function registryUrls(host: string, tlsVerify: boolean): string[] {
  if (isDockerHub(host)) return [`https://${dockerHubRegistry}`];
  return tlsVerify ? [`https://${host}`] : [`https://${host}`, `http://${host}`];
}
