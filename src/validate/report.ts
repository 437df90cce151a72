/** What `kagami validate` found, as data (the `--output json` shape) and as a person reads it. */

export type Status = "pass" | "fail" | "warn";

/** Where one blob's bytes came from: the registry itself, or the host its redirects ended on. */
export interface BlobSource {
  digest: string;
  size: number;
  /** `host[:port]` that served the bytes. */
  host: string;
  /** Every Location followed, in order; empty when the registry served the blob itself. */
  redirects: string[];
}

export interface ImageResult {
  reference: string;
  status: Status;
  message: string;
  /** The digest the reference resolved to. */
  digest?: string;
  platforms: string[];
  manifests: number;
  blobs: BlobSource[];
  bytes: number;
  /** Blobs served per host, for a quick look at where redirect rules sent them. */
  blobHosts: Record<string, number>;
}

export interface ChecksumResult {
  algorithm: "sha256" | "sha512";
  /** What the published `.sha256`/`.sha512` file says; absent when there is none. */
  expected?: string;
  actual: string;
  status: "match" | "mismatch" | "missing";
}

export interface FileResult {
  path: string;
  url: string;
  status: Status;
  message: string;
  size: number;
  /** `host[:port]` that served the file after any redirects. */
  host?: string;
  redirects: string[];
  checksums: ChecksumResult[];
}

export interface AccessResult {
  /** anonymous-ping, anonymous-pull, anonymous-push, ro-pull, ro-push, rw-push, rw-cleanup. */
  check: string;
  status: Status;
  message: string;
}

export interface ValidationReport {
  ok: boolean;
  registry?: string;
  artifacts?: string;
  images: ImageResult[];
  files: FileResult[];
  access: AccessResult[];
  summary: { passed: number; failed: number; warnings: number };
}

export function summarize(
  registry: string | undefined,
  artifacts: string | undefined,
  images: ImageResult[],
  files: FileResult[],
  access: AccessResult[],
): ValidationReport {
  const all = [...images, ...files, ...access];
  const count = (s: Status) => all.filter((r) => r.status === s).length;
  const summary = { passed: count("pass"), failed: count("fail"), warnings: count("warn") };
  const report: ValidationReport = {
    ok: summary.failed === 0,
    images,
    files,
    access,
    summary,
  };
  if (registry !== undefined) report.registry = registry;
  if (artifacts !== undefined) report.artifacts = artifacts;
  return report;
}

const label: Record<Status, string> = { pass: "PASS", fail: "FAIL", warn: "WARN" };

function hosts(counts: Record<string, number>): string {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([h, n]) => `${h} (${n})`)
    .join(", ");
}

/** The report as lines a person reads: one per check, then the verdict. */
export function formatText(r: ValidationReport): string {
  const what = [r.registry && `registry ${r.registry}`, r.artifacts && `artifacts ${r.artifacts}`];
  const lines = [`kagami validate: ${what.filter(Boolean).join(", ")}`];
  for (const i of r.images) {
    lines.push(`  ${label[i.status]}  image ${i.reference}: ${i.message}`);
    if (i.blobs.length > 0) lines.push(`        blobs served by ${hosts(i.blobHosts)}`);
  }
  for (const f of r.files) {
    lines.push(`  ${label[f.status]}  file ${f.path}: ${f.message}`);
  }
  for (const a of r.access) lines.push(`  ${label[a.status]}  ${a.check}: ${a.message}`);
  const { passed, failed, warnings } = r.summary;
  lines.push(
    `Result: ${r.ok ? "PASS" : "FAIL"} (${passed} passed, ${failed} failed, ${warnings} warning${warnings === 1 ? "" : "s"})`,
  );
  return `${lines.join("\n")}\n`;
}
