export const MediaType = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociArtifact: "application/vnd.oci.artifact.manifest.v1+json",
  ociEmpty: "application/vnd.oci.empty.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
  dockerForeignLayer: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
} as const;

export const imageManifestTypes: ReadonlySet<string> = new Set([
  MediaType.ociManifest,
  MediaType.dockerManifest,
  MediaType.ociArtifact,
]);
export const indexTypes: ReadonlySet<string> = new Set([MediaType.ociIndex, MediaType.dockerList]);
export const schema1Types: ReadonlySet<string> = new Set([
  MediaType.dockerSchema1,
  MediaType.dockerSchema1Signed,
]);

/** Every manifest type we store and serve: what a client or a copy engine puts in Accept. */
export const manifestTypes: readonly string[] = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerList,
  MediaType.dockerManifest,
  MediaType.ociArtifact,
];

export function isManifestType(mt: string): boolean {
  return imageManifestTypes.has(mt) || indexTypes.has(mt);
}

/** Layers that live elsewhere (Windows base layers, non-distributable OCI layers) need not be in the registry. */
export function isForeignLayer(mediaType: string, urls: unknown): boolean {
  if (mediaType === MediaType.dockerForeignLayer) return true;
  return (
    mediaType.startsWith("application/vnd.oci.image.layer.nondistributable.") &&
    Array.isArray(urls) &&
    urls.length > 0
  );
}

/** Strips parameters such as `; charset=utf-8` and lowercases. */
export function baseMediaType(contentType: string | undefined): string {
  if (!contentType) return "";
  return contentType.split(";")[0]!.trim().toLowerCase();
}
