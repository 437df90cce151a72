import { createHash, randomBytes } from "node:crypto";
import { connect } from "node:net";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { gcSchedule } from "../../src/server/gc-schedule.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";

/** Sends `head` and then nothing; resolves with how long the server kept the connection. */
function heldFor(port: number, head: string, readPaused = false): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let bytes = 0;
    const s = connect(port, "127.0.0.1", () => s.write(head));
    s.on("data", (b) => {
      bytes += b.length;
    });
    if (readPaused) {
      s.pause();
      setTimeout(() => s.resume(), 2500);
    }
    s.on("error", () => {});
    s.on("close", () => resolve({ ms: Date.now() - started, bytes }));
    setTimeout(() => {
      s.destroy();
      reject(new Error("the server kept the connection open for 10 s"));
    }, 10_000).unref();
  });
}

describe("http.readTimeout and http.writeTimeout, as Go's http.Server means them", () => {
  let k: RunningKagami;
  const blob = randomBytes(48 * 1024 * 1024);
  const digest = `sha256:${createHash("sha256").update(blob).digest("hex")}`;
  beforeAll(async () => {
    k = await startKagami({ config: { http: { readTimeout: "1s", writeTimeout: "1s" } } });
    const res = await fetch(`${k.url}/v2/slow/blobs/uploads/?digest=${digest}`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: blob,
    });
    expect(res.status).toBe(201);
  });
  afterAll(async () => {
    await k?.destroy();
  });

  it("closes a connection whose request body has not arrived within readTimeout", async () => {
    const head =
      `POST /v2/slow/blobs/uploads/?digest=sha256:${"0".repeat(64)} HTTP/1.1\r\nHost: x\r\n` +
      "Content-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n0123456789";
    const { ms } = await heldFor(k.port, head);
    expect(ms).toBeGreaterThanOrEqual(900);
    expect(ms).toBeLessThan(5000);
  });

  it("cuts a response not written within writeTimeout (a client that stops reading)", async () => {
    const { bytes } = await heldFor(k.port, `GET /v2/slow/blobs/${digest} HTTP/1.1\r\nHost: x\r\n\r\n`, true);
    expect(bytes).toBeLessThan(blob.length);
  });
});

describe("storage.gcTimeWindow", () => {
  it("holds a collection that falls due outside the window until the window opens", async () => {
    vi.useFakeTimers();
    try {
      let clock = new Date("2026-01-01T12:00:00Z");
      const runs: string[] = [];
      const stop = gcSchedule(
        async () => {
          runs.push(clock.toISOString().slice(11, 16));
        },
        3_600_000,
        { startMin: 14 * 60, endMin: 15 * 60 },
        pino({ level: "silent" }),
        () => clock,
      );
      for (let i = 0; i < 4 * 60; i++) {
        clock = new Date(clock.getTime() + 60_000);
        await vi.advanceTimersByTimeAsync(60_000);
      }
      stop();
      // Due at 13:00 (outside), started at 14:00; due again at 15:00, which is outside again.
      expect(runs).toEqual(["14:00"]);
    } finally {
      vi.useRealTimers();
    }
  });
});
