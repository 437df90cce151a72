/**
 * A rotated certificate goes into service without a restart: the server watches http.tls's cert
 * and key files, new connections get the new pair, and a half-done rotation (new certificate, old
 * key) keeps the pair in use until the key follows.
 */
import { X509Certificate } from "node:crypto";
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { freePort } from "../helpers/net.ts";
import { makeTestPki, type TestPki } from "../helpers/tls.ts";
import { hasTool } from "../helpers/tools.ts";

/** The SHA-256 fingerprint of the certificate a new TLS connection is served. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, rejectUnauthorized: false }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fp);
    });
    socket.on("error", reject);
  });
}

/** GET /v2/ trusting only `caFile`: the status, or the TLS error. */
function statusTrusting(port: number, caFile: string): Promise<number | string> {
  return new Promise((resolve) => {
    const req = request(
      { host: "127.0.0.1", port, path: "/v2/", ca: readFileSync(caFile), agent: false },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    req.end();
  });
}

async function until(what: string, check: () => Promise<boolean>, tries = 200): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`gave up waiting for ${what}`);
}

describe.runIf(hasTool("openssl"))("TLS certificate rotation", () => {
  let old: TestPki;
  let next: TestPki;
  let dir: string;
  let k: RunningKagami;
  let oldFp: string;
  let nextFp: string;
  let filesPort: number;
  const files = () => ({ cert: join(dir, "tls.crt"), key: join(dir, "tls.key") });

  beforeAll(async () => {
    old = makeTestPki();
    next = makeTestPki();
    dir = mkdtempSync(join(tmpdir(), "kagami-tls-rotation-"));
    copyFileSync(old.cert, files().cert);
    copyFileSync(old.key, files().key);
    // The artifact files' own listener serves the same certificate and must follow it too.
    filesPort = await freePort();
    k = await startKagami({
      tls: files(),
      config: { extensions: { artifacts: { rootDirectory: join(dir, "files"), port: filesPort } } },
    });
    oldFp = await servedFingerprint(k.port);
    nextFp = new X509Certificate(readFileSync(next.cert)).fingerprint256;
  });

  afterAll(async () => {
    await k?.destroy();
    for (const d of [dir, old?.dir, next?.dir]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it("keeps the pair in use while only the certificate has been replaced", async () => {
    expect(oldFp).not.toBe(nextFp);
    copyFileSync(next.cert, files().cert);
    await until("the warning about the mismatched pair", async () =>
      k.output().includes("TLS certificate not reloaded"),
    );
    expect(await servedFingerprint(k.port)).toBe(oldFp);
    expect(await servedFingerprint(filesPort)).toBe(oldFp);
    expect(await statusTrusting(k.port, old.caCert)).toBe(200);
  });

  it("serves the new certificate to new connections once the key follows, in the same process", async () => {
    const pid = k.proc.pid;
    copyFileSync(next.key, files().key);
    await until("the new certificate", async () => (await servedFingerprint(k.port)) === nextFp);
    await until(
      "the new certificate on the artifacts' listener",
      async () => (await servedFingerprint(filesPort)) === nextFp,
    );
    // the log is written asynchronously: it may trail the new certificate a little
    await until("the reload's log line", async () => k.output().includes("TLS certificate reloaded"));
    expect(await statusTrusting(k.port, next.caCert)).toBe(200);
    expect(await statusTrusting(k.port, old.caCert)).not.toBe(200);
    expect(k.proc.pid).toBe(pid);
    expect(k.proc.exitCode).toBeNull();
  });
});
