import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Health, type ReadinessCheck } from "../../src/server/health.ts";

afterEach(() => {
  vi.useRealTimers();
});

describe("readiness", () => {
  it("fails a check that never answers, and joins it instead of starting it again", async () => {
    vi.useFakeTimers();
    let started = 0;
    const hung: ReadinessCheck = {
      name: "storage",
      run: () => {
        started++;
        return new Promise(() => {});
      },
    };
    const health = new Health([hung], pino({ level: "silent" }));
    health.markStarted();
    const first = health.ready();
    await vi.advanceTimersByTimeAsync(5000);
    expect(await first).toEqual({
      status: 503,
      body: { status: "unavailable", failed: { storage: "TIMEOUT" } },
    });
    await vi.advanceTimersByTimeAsync(2000);
    const second = health.ready();
    await vi.advanceTimersByTimeAsync(5000);
    expect((await second).status).toBe(503);
    expect(started).toBe(1);
  });
});
