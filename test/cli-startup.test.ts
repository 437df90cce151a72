import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { kagamiBin } from "./helpers/kagami.ts";

const dir = mkdtempSync(join(tmpdir(), "kagami-startup-"));

/** Runs `kagami serve --config` and waits for it to exit, killing it (and failing) after `limitMs`. */
function serve(
  config: Record<string, unknown>,
  limitMs = 30_000,
): Promise<{ code: number | null; output: string }> {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify({ storage: { rootDirectory: join(dir, "data") }, ...config }));
  const proc = spawn(process.execPath, [kagamiBin, "serve", "--config", file], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  proc.stdout.on("data", (d: Buffer) => {
    output += d.toString();
  });
  proc.stderr.on("data", (d: Buffer) => {
    output += d.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`kagami serve still running after ${limitMs} ms:\n${output}`));
    }, limitMs);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe("kagami serve start-up failures exit at once", () => {
  let taken: Server;
  let port: number;

  beforeAll(async () => {
    taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    port = (taken.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => taken.close(() => r())));

  it("exits non-zero when the port is in use", async () => {
    const r = await serve({ http: { address: "127.0.0.1", port: String(port) } });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.output).toMatch(/kagami: listen EADDRINUSE: address already in use 127\.0\.0\.1:\d+/);
  });

  it("exits non-zero when the port is in use with a mirror configured", async () => {
    const r = await serve({
      http: { address: "127.0.0.1", port: String(port) },
      extensions: {
        sync: {
          enable: true,
          registries: [
            { urls: ["http://127.0.0.1:9"], onDemand: true, pollInterval: "1h", content: [{ prefix: "**" }] },
          ],
        },
      },
    });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.output).toMatch(/EADDRINUSE/);
  });

  it("exits non-zero when the TLS certificate file is missing", async () => {
    const cert = join(dir, "missing.crt");
    const r = await serve({
      http: { address: "127.0.0.1", port: "0", tls: { cert, key: join(dir, "missing.key") } },
    });
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    expect(r.output).toContain(`kagami: ENOENT: no such file or directory, open '${cert}'`);
  });
});
