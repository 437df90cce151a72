import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { defaults } from "../src/config/config.ts";
import { kagamiBin, type RunningKagami, startKagami } from "./helpers/kagami.ts";
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
        storage: { rootDirectory: "/tmp/x", gc: true },
        http: { port: "5000" },
      }),
    );
    const r = await kagami("verify", "--config", file);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/configuration is valid/);
    expect(r.stderr).toMatch(/warning: storage\.gc: garbage collection is not implemented/);
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
    const key = join(dir, "key.pem");
    const cert = join(dir, "cert.pem");
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        key,
        "-out",
        cert,
        "-days",
        "1",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
      ],
      { stdio: "ignore" },
    );
    const s = await startKagamiTls(cert, key);
    const status = await new Promise<number>((res, rej) => {
      const req = httpsRequest(
        `https://127.0.0.1:${s.port}/v2/`,
        { ca: execFileSync("cat", [cert]) },
        (r) => {
          r.resume();
          res(r.statusCode ?? 0);
        },
      );
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

/** startKagami writes http without tls; TLS needs the paths in the config. */
async function startKagamiTls(cert: string, key: string): Promise<RunningKagami> {
  // The helper polls http://; with TLS on, poll by spawning through the helper is not possible, so wait here.
  const { freePort } = await import("./helpers/net.ts");
  const port = await freePort();
  const root = mkdtempSync(join(tmpdir(), "kagami-tls-"));
  const cfg = join(root, "config.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      storage: { rootDirectory: join(root, "data") },
      http: { address: "127.0.0.1", port, tls: { cert, key } },
    }),
  );
  const { spawn } = await import("node:child_process");
  const proc = spawn(process.execPath, [kagamiBin, "serve", "--config", cfg], { stdio: "ignore" });
  const s = {
    port,
    proc,
    async destroy() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGTERM");
        await exited;
      }
    },
  } as unknown as RunningKagami;
  servers.push(s);
  for (let i = 0; i < 100; i++) {
    const up = await new Promise<boolean>((res) => {
      const req = httpsRequest(`https://127.0.0.1:${port}/v2/`, { rejectUnauthorized: false }, (r) => {
        r.resume();
        res(true);
      });
      req.on("error", () => res(false));
      req.end();
    });
    if (up) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error("TLS server did not start");
}
