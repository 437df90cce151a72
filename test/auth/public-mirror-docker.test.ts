/**
 * examples/public-mirror.json with the real docker CLI (no daemon), skopeo and podman: anonymous
 * pulls, `docker login` that checks the password, a read-only and a read-write account.
 *
 * The docker CLI pings `/v2/` without credentials and answers whatever challenge it gets there: to a
 * Basic challenge without stored credentials it gives up ("no basic auth credentials"), and after a
 * 200 it never sends the credentials it has, so `docker login` would accept any password.
 */
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ClientEnv, canRun, getManifest, makeClientEnv, run, runFailing } from "../clients/common.ts";
import { type BuiltLayout, buildImageLayout } from "../fixtures/images.ts";
import { basic, writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, repoRoot, startKagami } from "../helpers/kagami.ts";
import { hasTool } from "../helpers/tools.ts";

const dockerAgent = "Docker-Client/28.2.2 (linux)";
const example = JSON.parse(readFileSync(join(repoRoot, "examples/public-mirror.json"), "utf8")) as {
  http: Record<string, unknown>;
};

/** skopeo's arguments to push an image layout to `<host>/<repo>` with an account's credentials. */
function skopeoPush(ce: ClientEnv, creds: string, from: string, to: string): string[] {
  return [
    "--policy",
    ce.policy,
    "copy",
    "--dest-tls-verify=false",
    "--dest-creds",
    creds,
    from,
    `docker://${to}`,
  ];
}

async function startWithAccounts(accessControl: unknown): Promise<RunningKagami> {
  const htpasswd = join(mkdtempSync(join(tmpdir(), "kagami-pubmirror-")), "htpasswd");
  writeHtpasswd(htpasswd, [
    ["reader", "r-pass"],
    ["pusher", "p-pass"],
  ]);
  return startKagami({
    config: {
      http: { ...example.http, auth: { htpasswd: { path: htpasswd } }, accessControl },
    },
  });
}

describe.runIf(canRun("docker") && canRun("skopeo") && hasTool("htpasswd"))(
  "public mirror: anonymous docker pulls, docker login, accounts",
  () => {
    let k: RunningKagami;
    let ce: ClientEnv;
    let img: BuiltLayout;

    const docker = (...args: string[]) => run("docker", args, { env: ce.env });
    const dockerFails = async (...args: string[]) => {
      const err = await runFailing("docker", args, { env: ce.env });
      return `${err.stdout}${err.stderr}`;
    };
    const skopeo = (...args: string[]) => run("skopeo", ["--policy", ce.policy, ...args], { env: ce.env });
    const ref = (r: string) => `${k.host}/${r}`;

    beforeAll(async () => {
      k = await startWithAccounts(example.http.accessControl);
      ce = await makeClientEnv(k.host);
      img = await buildImageLayout(join(ce.dir, "layout"), { tag: "v1" });
      await run("skopeo", skopeoPush(ce, "pusher:p-pass", img.ref, ref("pub/app:v1")), { env: ce.env });
    });
    afterAll(async () => {
      await k?.destroy();
      await ce?.cleanup();
    });

    it("docker pulls anonymously", async () => {
      const { stdout } = await docker("manifest", "inspect", "--insecure", ref("pub/app:v1"));
      expect(JSON.parse(stdout)).toEqual(JSON.parse(img.images[0]!.manifest.toString()));
      expect(await dockerFails("manifest", "inspect", "--insecure", ref("pub/app:nope"))).toMatch(
        /no such manifest/,
      );
    });

    it("docker login refuses a wrong password and an unknown user, and accepts a right one", async () => {
      expect(await dockerFails("login", "-u", "pusher", "-p", "wrong", k.host)).toMatch(
        /invalid user name or password/,
      );
      expect(await dockerFails("login", "-u", "mallory", "-p", "p-pass", k.host)).toMatch(
        /invalid user name or password/,
      );
      expect((await docker("login", "-u", "reader", "-p", "r-pass", k.host)).stdout).toMatch(
        /Login Succeeded/,
      );
    });

    it("the read-only account pulls with docker but may not push", async () => {
      await docker("login", "-u", "reader", "-p", "r-pass", k.host);
      await docker("manifest", "inspect", "--insecure", ref("pub/app:v1"));
      await docker("manifest", "create", "--insecure", ref("pub/list:ro"), ref("pub/app:v1"));
      expect(await dockerFails("manifest", "push", "--insecure", ref("pub/list:ro"))).toMatch(
        /denied|may not create/i,
      );
      await docker("logout", k.host);
    });

    it("the read-write account pushes with docker; anonymous docker may not", async () => {
      await docker("manifest", "create", "--insecure", ref("pub/list:rw"), ref("pub/app:v1"));
      expect(await dockerFails("manifest", "push", "--insecure", ref("pub/list:rw"))).toMatch(
        /unauthorized|authentication required/i,
      );
      await docker("login", "-u", "pusher", "-p", "p-pass", k.host);
      const { stdout } = await docker("manifest", "push", "--insecure", ref("pub/list:rw"));
      const digest = stdout.trim().split("\n").at(-1)!;
      const list = await getManifest(k.url, "pub/list", "rw");
      expect(list.status).toBe(200);
      expect(list.digest).toBe(digest);
      await docker("logout", k.host);
    });

    it("skopeo pushes with the read-write account, not with the read-only one", async () => {
      await run("skopeo", skopeoPush(ce, "pusher:p-pass", img.ref, ref("pub/skopeo:v1")), { env: ce.env });
      const err = await runFailing("skopeo", skopeoPush(ce, "reader:r-pass", img.ref, ref("pub/skopeo:ro")), {
        env: ce.env,
      });
      expect(err.stderr).toMatch(/denied|may not create/i);
      const out = await skopeo("inspect", "--tls-verify=false", "--raw", `docker://${ref("pub/skopeo:v1")}`);
      expect(out.stdout).toBe(img.images[0]!.manifest.toString());
    });

    it.runIf(canRun("podman"))(
      "podman pushes with the read-write account, not with the read-only one",
      async () => {
        const podman = (...args: string[]) => run("podman", [...ce.storageFlags, ...args], { env: ce.env });
        await podman("pull", "--tls-verify=false", ref("pub/app:v1"));
        await podman("tag", ref("pub/app:v1"), ref("pub/podman:v1"));
        await podman("push", "--tls-verify=false", "--creds", "pusher:p-pass", ref("pub/podman:v1"));
        const err = await runFailing(
          "podman",
          [
            ...ce.storageFlags,
            "push",
            "--tls-verify=false",
            "--creds",
            "reader:r-pass",
            ref("pub/podman:v1"),
          ],
          { env: ce.env },
        );
        expect(err.stderr).toMatch(/denied|may not create|may not update/i);
        await podman("rmi", "-a", "-f");
      },
    );

    it("answers a docker client's anonymous ping with a token challenge and bad credentials with 401", async () => {
      const ping = await fetch(`${k.url}/v2/`, { headers: { "User-Agent": dockerAgent } });
      expect(ping.status).toBe(401);
      expect(ping.headers.get("www-authenticate")).toBe(
        `Bearer realm="${k.url}/_kagami/token",service="${example.http.realm}"`,
      );
      for (const auth of [basic("pusher", "wrong"), basic("nobody", "x"), "Bearer not-a-token"]) {
        const res = await fetch(`${k.url}/v2/`, {
          headers: { "User-Agent": dockerAgent, Authorization: auth },
        });
        expect(res.status, auth).toBe(401);
        expect(((await res.json()) as { errors: { code: string }[] }).errors[0]!.code).toBe("UNAUTHORIZED");
      }
      const proxied = await fetch(`${k.url}/v2/`, {
        headers: {
          "User-Agent": "docker/28.2.2 go/go1.24.3 UpstreamClient(Docker-Client/28.2.2)",
          "X-Forwarded-Proto": "https",
        },
      });
      expect(proxied.headers.get("www-authenticate")).toMatch(
        /^Bearer realm="https:\/\/127\.0\.0\.1:\d+\/_kagami\/token"/,
      );
      // Clients that send the credentials they have after a Basic challenge keep getting one.
      expect((await fetch(`${k.url}/v2/`)).headers.get("www-authenticate")).toMatch(/^Basic /);
    });

    it("issues tokens: anonymous ones read, a user's act as that user, wrong passwords get none", async () => {
      const token = async (auth?: string) => {
        const res = await fetch(`${k.url}/_kagami/token?service=registry&scope=repository:pub/app:pull`, {
          headers: auth ? { Authorization: auth } : {},
        });
        return {
          status: res.status,
          body: (await res.json()) as { token?: string; errors?: { code: string }[] },
        };
      };
      const bad = await token(basic("pusher", "wrong"));
      expect(bad.status).toBe(401);
      expect(bad.body.errors?.[0]?.code).toBe("UNAUTHORIZED");

      const anon = await token();
      expect(anon.status).toBe(200);
      const bearer = (t: string) => ({ Authorization: `Bearer ${t}` });
      expect((await fetch(`${k.url}/v2/`, { headers: bearer(anon.body.token!) })).status).toBe(200);
      expect(
        (await fetch(`${k.url}/v2/pub/app/manifests/v1`, { headers: bearer(anon.body.token!) })).status,
      ).toBe(200);
      const anonPush = await fetch(`${k.url}/v2/pub/tok/blobs/uploads/`, {
        method: "POST",
        headers: bearer(anon.body.token!),
      });
      expect(anonPush.status).toBe(401);

      const reader = await token(basic("reader", "r-pass"));
      const readerPush = await fetch(`${k.url}/v2/pub/tok/blobs/uploads/`, {
        method: "POST",
        headers: bearer(reader.body.token!),
      });
      expect(readerPush.status).toBe(403);
      const pusher = await token(basic("pusher", "p-pass"));
      const push = await fetch(`${k.url}/v2/pub/tok/blobs/uploads/`, {
        method: "POST",
        headers: bearer(pusher.body.token!),
      });
      expect(push.status).toBe(202);

      // A token is signed: another user name in it, or a later expiry, makes it worthless.
      const [claims, sig] = reader.body.token!.split(".");
      const forged = Buffer.from(
        JSON.stringify({ ...JSON.parse(Buffer.from(claims!, "base64url").toString()), sub: "pusher" }),
      ).toString("base64url");
      const res = await fetch(`${k.url}/v2/`, { headers: bearer(`${forged}.${sig}`) });
      expect(res.status).toBe(401);
    });

    it("left no server-side failure in the log", () => {
      expect(k.output()).not.toMatch(/"level":"error"/);
    });
  },
);

describe.runIf(canRun("docker") && canRun("skopeo") && hasTool("htpasswd"))(
  "docker where public and account-only repositories are mixed",
  () => {
    let k: RunningKagami;
    let ce: ClientEnv;
    const all = ["read", "create", "update", "delete"];
    const docker = (...args: string[]) => run("docker", args, { env: ce.env });

    beforeAll(async () => {
      k = await startWithAccounts({
        repositories: {
          "pub/**": {
            anonymousPolicy: ["read"],
            defaultPolicy: ["read"],
            policies: [{ users: ["pusher"], actions: all }],
          },
          "private/**": {
            policies: [
              { users: ["reader"], actions: ["read"] },
              { users: ["pusher"], actions: all },
            ],
          },
        },
      });
      ce = await makeClientEnv(k.host);
      const img = await buildImageLayout(join(ce.dir, "layout"), { tag: "v1" });
      for (const repo of ["pub/app", "private/app"]) {
        await run("skopeo", skopeoPush(ce, "pusher:p-pass", img.ref, `${k.host}/${repo}:v1`), {
          env: ce.env,
        });
      }
    });
    afterAll(async () => {
      await k?.destroy();
      await ce?.cleanup();
    });

    it("pulls public repositories anonymously and account-only ones after docker login", async () => {
      await docker("manifest", "inspect", "--insecure", `${k.host}/pub/app:v1`);
      const err = await runFailing(
        "docker",
        ["manifest", "inspect", "--insecure", `${k.host}/private/app:v1`],
        {
          env: ce.env,
        },
      );
      // `docker manifest inspect` reports every failure as "no such manifest"; the 401 is in the log.
      expect(`${err.stdout}${err.stderr}`).toMatch(/no such manifest/);
      expect(k.output()).toMatch(/"path":"\/v2\/private\/app\/manifests\/v1","status":401/);
      await docker("login", "-u", "reader", "-p", "r-pass", k.host);
      await docker("manifest", "inspect", "--insecure", `${k.host}/private/app:v1`);
      await docker("manifest", "inspect", "--insecure", `${k.host}/pub/app:v1`);
    });
  },
);

describe.runIf(hasTool("htpasswd"))("where anonymous callers may read nothing", () => {
  let k: RunningKagami;
  beforeAll(async () => {
    k = await startWithAccounts({
      repositories: { "**": { policies: [{ users: ["reader"], actions: ["read"] }] } },
    });
  });
  afterAll(async () => {
    await k?.destroy();
  });

  it("keeps the Basic challenge on /v2/ for docker too, and gives anonymous callers no token", async () => {
    const ping = await fetch(`${k.url}/v2/`, { headers: { "User-Agent": dockerAgent } });
    expect(ping.status).toBe(401);
    expect(ping.headers.get("www-authenticate")).toBe(`Basic realm="${example.http.realm}"`);
    expect((await fetch(`${k.url}/_kagami/token`)).status).toBe(401);
    const res = await fetch(`${k.url}/v2/`, { headers: { Authorization: basic("reader", "r-pass") } });
    expect(res.status).toBe(200);
  });
});

describe("without accounts", () => {
  it("has no token endpoint, and /v2/ stays open to docker clients", async () => {
    const k = await startKagami();
    try {
      const res = await fetch(`${k.url}/_kagami/token`);
      expect(res.status).toBe(404);
      expect(((await res.json()) as { errors: { message: string }[] }).errors[0]!.message).toMatch(
        /no accounts/,
      );
      expect((await fetch(`${k.url}/v2/`, { headers: { "User-Agent": dockerAgent } })).status).toBe(200);
    } finally {
      await k.destroy();
    }
  });
});
