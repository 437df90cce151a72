import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import { vi } from "vitest";
import { promoteCommand } from "../../src/cli/promote.ts";

/** Runs `kagami promote` in-process with what it printed on each stream. */
export async function promote(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = "";
  let stderr = "";
  const o = vi.spyOn(process.stdout, "write").mockImplementation((c: string | Uint8Array) => {
    stdout += c.toString();
    return true;
  });
  const e = vi.spyOn(process.stderr, "write").mockImplementation((c: string | Uint8Array) => {
    stderr += c.toString();
    return true;
  });
  try {
    return { code: await promoteCommand(argv), stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

export async function put(file: string, text: string): Promise<string> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, text);
  return file;
}

/** A digest-shaped string that no registry holds. */
export function fakeDigest(c: string): string {
  return `sha256:${c.repeat(64)}`;
}
