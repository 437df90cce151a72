/**
 * Content types of release files by name. Checksums and signatures are text a person or
 * `sha256sum -c` reads; anything unknown is a download (octet-stream), never something a browser
 * would render: the service sends nosniff too, so a mirrored file cannot become a page.
 */
const text = "text/plain; charset=utf-8";

/** Longest suffix first, so `.tar.gz` wins over `.gz`. */
const bySuffix: [string, string][] = [
  [".tar.gz", "application/gzip"],
  [".tar.xz", "application/x-xz"],
  [".tar.zst", "application/zstd"],
  [".sha256", text],
  [".sha512", text],
  [".sha1", text],
  [".md5", text],
  [".txt", text],
  [".md", "text/markdown; charset=utf-8"],
  [".sig", "application/octet-stream"],
  [".asc", "application/pgp-signature"],
  [".cert", "application/x-pem-file"],
  [".pem", "application/x-pem-file"],
  [".crt", "application/x-pem-file"],
  [".json", "application/json"],
  [".yaml", "application/yaml"],
  [".yml", "application/yaml"],
  [".tgz", "application/gzip"],
  [".gz", "application/gzip"],
  [".tar", "application/x-tar"],
  [".xz", "application/x-xz"],
  [".zst", "application/zstd"],
  [".zip", "application/zip"],
  [".deb", "application/vnd.debian.binary-package"],
  [".rpm", "application/x-rpm"],
];

export function contentTypeFor(name: string): string {
  const lower = name.toLowerCase();
  for (const [suffix, type] of bySuffix) if (lower.endsWith(suffix)) return type;
  return "application/octet-stream";
}

/** Checksum files published beside a release file; never themselves verified against anything. */
export const checksumSuffixes = [".sha256", ".sha512"] as const;

export function isChecksumFile(name: string): boolean {
  return checksumSuffixes.some((s) => name.endsWith(s));
}
