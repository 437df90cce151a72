/**
 * Real clients against a public-mirror style Kagami: anonymous pull, a read-only and a
 * read-write htpasswd account, over HTTP and over HTTPS with a test CA.
 */
import { copyFileSync, mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ClientEnv,
  CommandError,
  canRun,
  expectImageInRegistry,
  makeClientEnv,
  run,
} from "../clients/common.ts";
import { type BuiltLayout, buildImageLayout } from "../fixtures/images.ts";
import { writeHtpasswd } from "../helpers/htpasswd.ts";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { makeTestPki, type TestPki } from "../helpers/tls.ts";
import { hasTool } from "../helpers/tools.ts";

const accessControl = {
  repositories: {
    "**": {
      policies: [
        { users: ["writer"], actions: ["read", "create", "update", "delete"] },
        { users: ["reader"], actions: ["read"] },
      ],
      anonymousPolicy: ["read"],
    },
  },
};

async function fails(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CommandError) return err.message;
    throw err;
  }
  throw new Error("the command succeeded but should have failed");
}

for (const scheme of ["http", "https"] as const) {
  describe.runIf(canRun("skopeo") && hasTool("htpasswd") && hasTool("openssl"))(
    `clients with accounts over ${scheme}`,
    () => {
      let k: RunningKagami;
      let ce: ClientEnv;
      let img: BuiltLayout;
      let pki: TestPki;
      let certDir: string;

      const skopeo = (...args: string[]) => run("skopeo", ["--policy", ce.policy, ...args], { env: ce.env });
      // Over HTTPS the clients verify the server against the test CA (certs.d layout); over HTTP TLS is off.
      const dest = () => (scheme === "https" ? [`--dest-cert-dir=${certDir}`] : ["--dest-tls-verify=false"]);
      const src = () => (scheme === "https" ? [`--src-cert-dir=${certDir}`] : ["--src-tls-verify=false"]);
      const tlsFlag = () => (scheme === "https" ? [`--cert-dir=${certDir}`] : ["--tls-verify=false"]);
      const ref = (r: string) => `docker://${k.host}/${r}`;

      beforeAll(async () => {
        const dir = mkdtempSync(join(tmpdir(), "kagami-authclients-"));
        const htpasswd = join(dir, "htpasswd");
        writeHtpasswd(htpasswd, [
          ["writer", "w-pass"],
          ["reader", "r-pass"],
        ]);
        pki = makeTestPki();
        certDir = join(dir, "certs.d");
        mkdirSync(certDir);
        copyFileSync(pki.caCert, join(certDir, "ca.crt"));
        k = await startKagami({
          config: { http: { realm: "mirror", auth: { htpasswd: { path: htpasswd } }, accessControl } },
          ...(scheme === "https" ? { tls: { cert: pki.cert, key: pki.key } } : {}),
        });
        ce = await makeClientEnv(k.host);
        img = await buildImageLayout(join(ce.dir, "layout"), { tag: "v1" });
      });
      afterAll(async () => {
        await k?.destroy();
        await ce?.cleanup();
      });

      it("skopeo pushes with the read-write account and pulls anonymously", async () => {
        await skopeo("copy", ...dest(), "--dest-creds", "writer:w-pass", img.ref, ref("pub/app:v1"));
        if (scheme === "http") await expectImageInRegistry(k.url, "pub/app", "v1", img);
        const out = await skopeo("inspect", ...tlsFlag(), "--raw", ref("pub/app:v1"));
        expect(out.stdout).toBe(img.images[0]!.manifest.toString());
        await skopeo("copy", ...src(), ref("pub/app:v1"), `dir:${join(ce.dir, "pulled")}`);
      });

      it("skopeo fails cleanly without credentials, with a wrong password, and with the read-only account", async () => {
        expect(await fails(skopeo("copy", ...dest(), img.ref, ref("pub/app:anon")))).toMatch(
          /authentication required|unauthorized/i,
        );
        expect(
          await fails(skopeo("copy", ...dest(), "--dest-creds", "writer:wrong", img.ref, ref("pub/app:bad"))),
        ).toMatch(/invalid user name or password|unauthorized/i);
        expect(
          await fails(skopeo("copy", ...dest(), "--dest-creds", "reader:r-pass", img.ref, ref("pub/app:ro"))),
        ).toMatch(/denied|may not create/i);
        expect(k.output()).not.toMatch(/"level":"error"/);
      });

      it("skopeo login stores credentials that later commands use", async () => {
        await skopeo("login", ...tlsFlag(), "-u", "writer", "-p", "w-pass", k.host);
        await skopeo("copy", ...dest(), img.ref, ref("pub/app:after-login"));
        expect(await fails(skopeo("login", ...tlsFlag(), "-u", "writer", "-p", "nope", k.host))).toMatch(
          /invalid username\/password/i,
        );
        await skopeo("logout", k.host);
      });

      it.runIf(canRun("podman"))(
        "podman logs in, pushes and pulls; a wrong password is refused",
        async () => {
          const podman = (...args: string[]) => run("podman", [...ce.storageFlags, ...args], { env: ce.env });
          expect(await fails(podman("login", ...tlsFlag(), "-u", "reader", "-p", "bad", k.host))).toMatch(
            /invalid|unauthorized/i,
          );
          await podman("login", ...tlsFlag(), "-u", "writer", "-p", "w-pass", k.host);
          await podman("pull", ...tlsFlag(), `${k.host}/pub/app:v1`);
          await podman("tag", `${k.host}/pub/app:v1`, `${k.host}/pub/podman:v1`);
          await podman("push", ...tlsFlag(), `${k.host}/pub/podman:v1`);
          await podman("logout", k.host);
          await podman("rmi", "-a", "-f");
          await podman("pull", ...tlsFlag(), `${k.host}/pub/podman:v1`);
        },
      );

      it.runIf(canRun("buildah"))("buildah pushes with --creds", async () => {
        const buildah = (...args: string[]) => run("buildah", [...ce.storageFlags, ...args], { env: ce.env });
        await buildah("pull", ...tlsFlag(), "--creds", "reader:r-pass", `${k.host}/pub/app:v1`);
        await buildah(
          "push",
          ...tlsFlag(),
          "--creds",
          "writer:w-pass",
          `${k.host}/pub/app:v1`,
          `docker://${k.host}/pub/buildah:v1`,
        );
        expect(
          await fails(
            buildah(
              "push",
              ...tlsFlag(),
              "--creds",
              "reader:r-pass",
              `${k.host}/pub/app:v1`,
              `docker://${k.host}/pub/buildah:ro`,
            ),
          ),
        ).toMatch(/denied|may not create/i);
      });
    },
  );
}
