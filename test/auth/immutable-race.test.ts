import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { basic, writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { imageManifest, ociManifest, sha256 } from "../helpers/push.ts";
import { hasTool } from "../helpers/tools.ts";

/** `ci` may create but not update: its tags are immutable. `maint` may move them. */
const ci = basic("ci", "ci-pass");
const maint = basic("maint", "maint-pass");
const repo = "rel/app";
const config = Buffer.from('{"architecture":"amd64","os":"linux"}');
const layer = Buffer.from("immutable tag race layer");

/** A manifest of the one config and layer, made distinct by an annotation. */
const manifest = (n: number) =>
  imageManifest(config, [layer], { annotations: { "test.kagami.n": String(n) } });

describe.runIf(hasTool("htpasswd"))("immutable tags under concurrent pushes", () => {
  let k: RunningKagami;
  let dir: string;

  const put = (tag: string, body: Buffer, auth: string) =>
    fetch(`${k.url}/v2/${repo}/manifests/${tag}`, {
      method: "PUT",
      body,
      headers: { Authorization: auth, "Content-Type": ociManifest },
    });

  const tagDigest = async (tag: string) => {
    const res = await fetch(`${k.url}/v2/${repo}/manifests/${tag}`, {
      method: "HEAD",
      headers: { Authorization: ci, Accept: ociManifest },
    });
    expect(res.status).toBe(200);
    return res.headers.get("docker-content-digest");
  };

  /** Sends `bodies` to `tag` all at once; the 201s and the refusals with their error bodies. */
  const race = async (tag: string, bodies: Buffer[], auth: string) => {
    const answers = await Promise.all(
      bodies.map(async (body) => {
        const res = await put(tag, body, auth);
        const text = await res.text();
        return { status: res.status, digest: res.headers.get("docker-content-digest"), text };
      }),
    );
    return {
      won: answers.filter((a) => a.status === 201),
      lost: answers.filter((a) => a.status !== 201),
    };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "kagami-immutable-"));
    const htpasswd = join(dir, "htpasswd");
    writeHtpasswd(htpasswd, [
      ["ci", "ci-pass"],
      ["maint", "maint-pass"],
    ]);
    k = await startKagami({
      config: {
        http: {
          auth: { htpasswd: { path: htpasswd } },
          accessControl: {
            repositories: {
              "rel/**": {
                policies: [
                  { users: ["ci"], actions: ["read", "create"] },
                  { users: ["maint"], actions: ["read", "create", "update"] },
                ],
              },
            },
          },
        },
      },
    });
    for (const data of [config, layer]) {
      const res = await fetch(`${k.url}/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, {
        method: "POST",
        body: data,
        headers: { Authorization: ci, "Content-Type": "application/octet-stream" },
      });
      expect(res.status).toBe(201);
    }
  });
  afterAll(async () => {
    await k?.destroy();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("lets exactly one of 20 concurrent pushes of different manifests create a tag; the rest get 403", async () => {
    const bodies = Array.from({ length: 20 }, (_, i) => manifest(i));
    const { won, lost } = await race("v1", bodies, ci);
    expect(won.map((w) => w.status)).toEqual([201]);
    expect(lost).toHaveLength(19);
    for (const l of lost) {
      expect(l.status).toBe(403);
      const err = (JSON.parse(l.text) as { errors: { code: string; message: string }[] }).errors[0]!;
      expect(err.code).toBe("DENIED");
      expect(err.message).toMatch(/tag 'v1'.*already/);
      expect(err.message).toContain("update");
    }
    expect(await tagDigest("v1")).toBe(won[0]!.digest);
    // The winner pushed again is the same content under the same tag: still allowed.
    const again = await put("v1", bodies.find((b) => sha256(b) === won[0]!.digest)!, ci);
    expect(again.status).toBe(201);
  });

  it("accepts 20 concurrent pushes of the same manifest to a new tag: all 201, none a move", async () => {
    const body = manifest(100);
    const { won, lost } = await race(
      "v2",
      Array.from({ length: 20 }, () => body),
      ci,
    );
    expect(lost.map((l) => `${l.status} ${l.text}`)).toEqual([]);
    expect(won).toHaveLength(20);
    expect(await tagDigest("v2")).toBe(sha256(body));
  });

  it("lets a user with update move the tag, and still refuses ci moving it back", async () => {
    const moved = manifest(200);
    expect((await put("v1", moved, maint)).status).toBe(201);
    expect(await tagDigest("v1")).toBe(sha256(moved));
    const back = await put("v1", manifest(0), ci);
    expect(back.status).toBe(403);
    expect(await tagDigest("v1")).toBe(sha256(moved));
  });
});
