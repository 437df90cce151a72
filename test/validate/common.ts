import { createHash, randomBytes } from "node:crypto";
import { copyFile, mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { vi } from "vitest";
import { copyCommand } from "../../src/cli/copy.ts";
import { validateCommand } from "../../src/cli/validate.ts";
import type { ValidationReport } from "../../src/validate/report.ts";
import { cli } from "../helpers/cli.ts";

/** Runs `kagami validate` in-process with `--output json`: its exit status and report. */
export async function validateJson(...argv: string[]): Promise<{ code: number; report: ValidationReport }> {
  let stdout = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    stdout += chunk.toString();
    return true;
  });
  let code: number;
  try {
    code = await validateCommand([...argv, "--output", "json"]);
  } finally {
    spy.mockRestore();
  }
  return { code, report: JSON.parse(stdout) as ValidationReport };
}

/** Pushes every platform of a layout image with Kagami's own copy (no outside tool needed). */
export async function pushLayout(ref: string, dest: string, creds?: string): Promise<void> {
  const args = ["-q", "--all", "--dest-tls-verify=false", ...(creds ? ["--dest-creds", creds] : [])];
  const { code, stderr } = await cli(copyCommand, ...args, ref, `docker://${dest}`);
  if (code !== 0) throw new Error(`push ${ref} to ${dest} failed: ${stderr}`);
}

/** Copies a layout's blobs to `<dir>/containers/images/<digest>`, archeio's blob-copy layout. */
export async function blobCopy(layoutDir: string, dir: string): Promise<void> {
  const to = join(dir, "containers/images");
  await mkdir(to, { recursive: true });
  for (const hex of await readdir(join(layoutDir, "blobs/sha256"))) {
    await copyFile(join(layoutDir, "blobs/sha256", hex), join(to, `sha256:${hex}`));
  }
}

function hex(alg: string, data: Buffer): string {
  return createHash(alg).update(data).digest("hex");
}

/**
 * Release files as dl.k8s.io publishes them (`<file>.sha256` and `.sha512` holding the bare hex):
 * `good` with both sums, `sha256-only`, `bad` whose .sha256 is wrong, `nosums` with none.
 */
export async function releaseFiles(root: string): Promise<{ prefix: string; files: Record<string, string> }> {
  const prefix = "release/v1.31.0/bin/linux/amd64";
  const dir = join(root, prefix);
  await mkdir(dir, { recursive: true });
  const write = async (name: string, sums: { sha256?: string; sha512?: string }) => {
    const data = randomBytes(64 * 1024 + 17);
    await writeFile(join(dir, name), data);
    for (const alg of ["sha256", "sha512"] as const) {
      const value = sums[alg];
      if (value === undefined) continue;
      await writeFile(join(dir, `${name}.${alg}`), value === "right" ? hex(alg, data) : value);
    }
  };
  await write("kubectl", { sha256: "right", sha512: "right" });
  await write("kubeadm", { sha256: "right" });
  await write("bad", { sha256: "0".repeat(64), sha512: "right" });
  await write("nosums", {});
  const files: Record<string, string> = {};
  for (const n of ["kubectl", "kubeadm", "bad", "nosums"]) files[n] = `${prefix}/${n}`;
  return { prefix, files };
}
