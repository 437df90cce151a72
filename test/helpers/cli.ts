import { vi } from "vitest";

/** Runs a command function in-process, returning its status and what it wrote to stderr. */
export async function cli(
  fn: (argv: string[]) => Promise<number>,
  ...argv: string[]
): Promise<{ code: number; stderr: string }> {
  let stderr = "";
  const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
    stderr += chunk.toString();
    return true;
  });
  try {
    return { code: await fn(argv), stderr };
  } finally {
    spy.mockRestore();
  }
}
