import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kagamiBin, startKagami } from "../helpers/kagami.ts";
import { freePort } from "../helpers/net.ts";
import { hasTool, privateMount } from "../helpers/tools.ts";

// Root writes through file modes, so a read-only storage takes an immutable file or a read-only mount.
const asRoot = process.getuid?.() === 0 || process.env.CI === "true";

interface Exit {
  code: number | null;
  stderr: string;
}

/** Runs `kagami serve` (under `launcher`) and waits for it to give up. */
function serveUntilExit(configPath: string, launcher: string[] = []): Promise<Exit> {
  const argv = [...launcher, process.execPath, kagamiBin, "serve", "--config", configPath];
  return new Promise((resolve) => {
    const child = execFile(
      argv[0]!,
      argv.slice(1),
      { timeout: 15_000, killSignal: "SIGKILL" },
      (err, _stdout, stderr) => {
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr });
      },
    );
    child.stdin?.end();
  });
}

async function writeConfig(dir: string, data: string): Promise<string> {
  const path = join(dir, "config.json");
  await writeFile(
    path,
    JSON.stringify({
      distSpecVersion: "1.1.0",
      storage: { rootDirectory: data },
      http: { address: "127.0.0.1", port: String(await freePort()) },
      log: { level: "info" },
    }),
  );
  return path;
}

describe.skipIf(!asRoot)("storage Kagami cannot write", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "kagami-ro-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it.runIf(hasTool("chattr"))(
    "refuses to start on a database it may not write, naming the file and the likely cause",
    async () => {
      await mkdir(join(dir, "immutable"));
      const k = await startKagami({ rootDir: join(dir, "immutable") });
      await k.stop();
      const db = join(k.rootDir, "data", "kagami.db");
      await promisifiedChattr("+i", db);
      try {
        const exit = await serveUntilExit(k.configPath);
        expect(exit.code).toBe(1);
        expect(exit.stderr).toContain(`cannot write the metadata database ${db} (SQLITE_READONLY`);
        expect(exit.stderr).toMatch(/not writable by the user Kagami runs as \(uid \d+\)/);
        expect(exit.stderr).toContain("read-only mount");
      } finally {
        await promisifiedChattr("-i", db);
      }
    },
    30_000,
  );

  it.runIf(hasTool("unshare"))(
    "refuses to start on a read-only mount, naming the database and the likely cause",
    async () => {
      const data = join(dir, "ro-mount");
      await mkdir(data);
      const exit = await serveUntilExit(
        await writeConfig(dir, data),
        privateMount('mount --bind "$0" "$0" && mount -o remount,bind,ro "$0"', data),
      );
      expect(exit.code).toBe(1);
      expect(exit.stderr).toContain(`cannot write the metadata database ${join(data, "kagami.db")} (SQLITE_`);
      expect(exit.stderr).toContain("read-only mount");
      expect(exit.stderr).toContain("storage.rootDirectory");
    },
    30_000,
  );
});

function promisifiedChattr(flag: string, path: string): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile("chattr", [flag, path], (err) => (err ? reject(err) : resolve())),
  );
}
