/**
 * Log lines name their level ("info", "warn", not pino's numbers) and the access log line carries
 * the user the access rules authenticated; anonymous requests and failed logins carry none.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { basic, writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { hasTool } from "../helpers/tools.ts";

type Line = Record<string, unknown>;

describe.runIf(hasTool("htpasswd"))("log fields and levels", () => {
  let dir: string;
  let k: RunningKagami;

  /** The access log line of the request sent with X-Request-Id `id` (written when the response closes). */
  async function accessLine(id: string): Promise<Line> {
    for (let i = 0; i < 100; i++) {
      const line = k
        .output()
        .split("\n")
        .find((l) => l.includes(`"reqId":"${id}"`) && l.includes('"msg":"request"'));
      if (line) return JSON.parse(line) as Line;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`no access log line for ${id}:\n${k.output()}`);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "kagami-access-log-"));
    const htpasswd = join(dir, "htpasswd");
    writeHtpasswd(htpasswd, [["alice", "wonderland"]]);
    k = await startKagami({
      config: {
        http: {
          auth: { htpasswd: { path: htpasswd } },
          accessControl: {
            repositories: { "**": { anonymousPolicy: ["read"], defaultPolicy: ["read", "create"] } },
          },
        },
      },
    });
  });

  afterAll(async () => {
    await k?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("writes levels as names", async () => {
    await fetch(`${k.url}/v2/`, { headers: { "X-Request-Id": "levels" } });
    const lines = k
      .output()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Line);
    expect(lines.length).toBeGreaterThan(0);
    for (const l of lines) expect(["trace", "debug", "info", "warn", "error", "fatal"]).toContain(l.level);
    expect(await accessLine("levels")).toMatchObject({ level: "info" });
  });

  it("names the authenticated user in the access log line", async () => {
    const res = await fetch(`${k.url}/v2/_catalog`, {
      headers: { Authorization: basic("alice", "wonderland"), "X-Request-Id": "as-alice" },
    });
    expect(res.status).toBe(200);
    expect(await accessLine("as-alice")).toMatchObject({ user: "alice", status: 200, path: "/v2/_catalog" });
  });

  it("names nobody for anonymous callers and refused logins", async () => {
    await fetch(`${k.url}/v2/_catalog`, { headers: { "X-Request-Id": "anonymous" } });
    expect(await accessLine("anonymous")).not.toHaveProperty("user");
    const refused = await fetch(`${k.url}/v2/_catalog`, {
      headers: { Authorization: basic("alice", "not-her-password"), "X-Request-Id": "refused" },
    });
    expect(refused.status).toBe(401);
    const line = await accessLine("refused");
    expect(line).not.toHaveProperty("user");
    expect(line.status).toBe(401);
    expect(k.output()).not.toContain("not-her-password");
  });
});
