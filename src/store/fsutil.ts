import { randomUUID } from "node:crypto";
import { mkdir, open, rename, unlink } from "node:fs/promises";
import { dirname, join } from "node:path";

/** fsync a directory so a rename inside it survives a power loss. */
export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function syncFile(path: string): Promise<void> {
  const handle = await open(path, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes bytes durably: temp file in `tmpDir`, fsync, rename over `dest`, fsync the directory. */
export async function writeFileAtomic(tmpDir: string, dest: string, data: Uint8Array): Promise<void> {
  const tmp = join(tmpDir, `${randomUUID()}.tmp`);
  const handle = await open(tmp, "w");
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await mkdir(dirname(dest), { recursive: true });
    await rename(tmp, dest);
  } catch (err) {
    // A write that ran out of space must give its part back at once, not at the next purge.
    await unlink(tmp).catch(() => {});
    throw err;
  }
  await syncDir(dirname(dest));
}

export function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException)?.code === "ENOENT";
}
