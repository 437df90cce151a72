import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { basic, writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { pushImage } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

let servers: RunningKagami[] = [];
afterEach(async () => {
  for (const s of servers) await s.destroy();
  servers = [];
});

function htpasswdFile(): string {
  const path = join(mkdtempSync(join(tmpdir(), "kagami-modes-")), "htpasswd");
  writeHtpasswd(path, [["user", "pass"]]);
  return path;
}

async function start(http: Record<string, unknown>): Promise<RunningKagami> {
  const k = await startKagami({ config: { http } });
  servers.push(k);
  return k;
}

describe.runIf(hasTool("htpasswd"))("authentication modes", () => {
  it("with accounts but no accessControl: users may do everything, anonymous callers nothing", async () => {
    const k = await start({ auth: { htpasswd: { path: htpasswdFile() } } });
    const anon = await fetch(`${k.url}/v2/_catalog`);
    expect(anon.status).toBe(401);
    const push = await fetch(`${k.url}/v2/x/blobs/uploads/`, {
      method: "POST",
      headers: { Authorization: basic("user", "pass") },
    });
    expect(push.status).toBe(202);
  });

  it("waits failDelay seconds before answering a failed login", async () => {
    const k = await start({ auth: { htpasswd: { path: htpasswdFile() }, failDelay: 1 } });
    const t0 = Date.now();
    const res = await fetch(`${k.url}/v2/`, { headers: { Authorization: basic("user", "nope") } });
    expect(res.status).toBe(401);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
  });

  it("applies accessControl changes from the config file without a restart, and ignores a broken edit", async () => {
    const k = await start({
      auth: { htpasswd: { path: htpasswdFile() } },
      accessControl: { repositories: { "**": { defaultPolicy: ["read", "create"] } } },
    });
    await pushImage(k.url, "pub/app", "v1").catch(() => {});
    const auth = { Authorization: basic("user", "pass") };
    expect((await fetch(`${k.url}/v2/pub/app/tags/list`)).status).toBe(401);
    const cfg = JSON.parse(readFileSync(k.configPath, "utf8"));
    cfg.http.accessControl.repositories["**"].anonymousPolicy = ["read"];
    writeFileSync(k.configPath, JSON.stringify(cfg));
    await expect
      .poll(async () => (await fetch(`${k.url}/v2/pub/app/tags/list`, { headers: auth })).status, {
        timeout: 5000,
      })
      .not.toBe(401);
    await expect
      .poll(async () => (await fetch(`${k.url}/v2/pub/app/tags/list`)).status, { timeout: 5000 })
      .not.toBe(401);

    writeFileSync(k.configPath, "{ this is not json");
    await new Promise((r) => setTimeout(r, 2500));
    expect((await fetch(`${k.url}/v2/pub/app/tags/list`)).status).not.toBe(401);
    expect(k.output()).toMatch(/configuration not reloaded, keeping the running one/);
  });
});
