import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { defaults } from "../src/config/config.ts";
import { kagamiBin, type RunningKagami, startKagami } from "./helpers/kagami.ts";
import { makeTestPki } from "./helpers/tls.ts";
import { hasTool } from "./helpers/tools.ts";

const run = promisify(execFile);

async function kagami(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [kagamiBin, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

const dir = mkdtempSync(join(tmpdir(), "kagami-cli-"));
let servers: RunningKagami[] = [];
afterEach(async () => {
  for (const s of servers) await s.destroy();
  servers = [];
});

describe("kagami verify", () => {
  it("accepts a good config and warns about fields not implemented", async () => {
    const file = join(dir, "good.json");
    writeFileSync(
      file,
      JSON.stringify({
        distSpecVersion: "1.1.0",
        storage: { rootDirectory: "/tmp/x", storageDriver: { name: "s3" } },
        http: { port: "5000" },
      }),
    );
    const r = await kagami("verify", "--config", file);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/configuration is valid/);
    expect(r.stderr).toMatch(/warning: storage\.storageDriver: only the local file system is supported/);
  });

  it("prints every problem with its field and exits non-zero", async () => {
    const file = join(dir, "bad.json");
    writeFileSync(file, JSON.stringify({ http: { port: true, address: 1 }, log: { level: "chatty" } }));
    const r = await kagami("verify", "--config", file);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/http\.port: must be a TCP port/);
    expect(r.stderr).toMatch(/http\.address: must be string/);
    expect(r.stderr).toMatch(/log\.level: must be one of/);
  });

  it("prints its version and usage", async () => {
    expect((await kagami("--version")).stdout).toMatch(/^kagami \d+\.\d+\.\d+/);
    const r = await kagami("frobnicate");
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown command 'frobnicate'/);
  });

  it("defaults to 127.0.0.1:5000 with data under ./storage", () => {
    const { config } = defaults();
    expect(config.http).toMatchObject({ address: "127.0.0.1", port: 5000 });
    expect(config.storage.rootDirectory).toBe(resolve("storage"));
  });
});

describe("kagami serve", () => {
  it("serves HTTPS with http.tls", async () => {
    if (!hasTool("openssl")) return;
    const pki = makeTestPki();
    const s = await startKagami({ tls: { cert: pki.cert, key: pki.key } });
    servers.push(s);
    const status = await new Promise<number>((res, rej) => {
      const req = httpsRequest(`${s.url}/v2/`, { ca: readFileSync(pki.caCert) }, (r) => {
        r.resume();
        res(r.statusCode ?? 0);
      });
      req.on("error", rej);
      req.end();
    });
    expect(status).toBe(200);
  });

  it("lets an in-flight upload finish on SIGTERM, then exits 0", async () => {
    const s = await startKagami();
    servers.push(s);
    const post = await fetch(`${s.url}/v2/slow/up/blobs/uploads/`, { method: "POST" });
    const loc = post.headers.get("location")!;
    const result = new Promise<number>((res, rej) => {
      const req = httpRequest(
        `${s.url}${loc}`,
        { method: "PATCH", headers: { "Content-Length": "6" } },
        (r) => {
          r.resume();
          res(r.statusCode ?? 0);
        },
      );
      req.on("error", rej);
      req.write("abc");
      setTimeout(() => {
        s.proc.kill("SIGTERM");
        setTimeout(() => req.end("def"), 300);
      }, 200);
    });
    expect(await result).toBe(202);
    const code = await new Promise((r) =>
      s.proc.exitCode !== null ? r(s.proc.exitCode) : s.proc.once("exit", r),
    );
    expect(code).toBe(0);
    expect(s.output()).toMatch(/kagami stopped/);
  });
});
