/**
 * Runs the project's OCI distribution-spec conformance suite (conformance/) as a separate vitest
 * process, exactly as a user would against any registry:
 *  - against Kagami, where every check must pass;
 *  - against CNCF distribution 2.8, where exactly the checks listed in
 *    conformance/known-failures/distribution.json must fail (proof that the suite tests real behaviour);
 *  - through a Bearer-token and a Basic-auth proxy, to prove the suite's auth handling.
 */
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, request as httpRequest, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type RunningDistribution, startDistribution } from "./helpers/distribution.ts";
import { writeHtpasswd } from "./helpers/htpasswd.ts";
import { type RunningKagami, repoRoot, startKagami } from "./helpers/kagami.ts";
import { hasTool } from "./helpers/tools.ts";

const SUITE_TIMEOUT = 240_000;

interface KnownFailures {
  failures: { test: string; why: string }[];
}

interface CheckResult {
  name: string;
  status: string;
  messages: string[];
}

interface SuiteRun {
  checks: CheckResult[];
  failed: CheckResult[];
  passed: CheckResult[];
  output: string;
}

const ALL_WORKFLOWS: Record<string, string> = {
  OCI_TEST_PULL: "1",
  OCI_TEST_PUSH: "1",
  OCI_TEST_CONTENT_DISCOVERY: "1",
  OCI_TEST_CONTENT_MANAGEMENT: "1",
  OCI_AUTOMATIC_CROSSMOUNT: "1",
};

/** Spawns `npx vitest run --config conformance/vitest.config.ts` with a JSON report and parses it. */
async function runSuite(rootUrl: string, suiteEnv: Record<string, string>): Promise<SuiteRun> {
  const dir = await mkdtemp(join(tmpdir(), "kagami-conformance-"));
  const outputFile = join(dir, "report.json");
  const childEnv: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // do not leak this vitest's worker state, or a developer's OCI_* settings, into the nested run
    if (v !== undefined && !/^(VITEST|TINYPOOL|OCI_)/.test(k)) childEnv[k] = v;
  }
  Object.assign(childEnv, { OCI_ROOT_URL: rootUrl, ...suiteEnv });
  try {
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn(
        "npx",
        [
          "vitest",
          "run",
          "--config",
          "conformance/vitest.config.ts",
          "--reporter=json",
          `--outputFile=${outputFile}`,
        ],
        { cwd: repoRoot, env: childEnv, stdio: ["ignore", "pipe", "pipe"] },
      );
      let out = "";
      child.stdout.on("data", (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on("data", (d: Buffer) => {
        out += d.toString();
      });
      child.on("error", reject);
      // vitest exits 1 when any check fails; the report says which
      child.on("close", () => resolve(out));
    });
    let report: {
      testResults: {
        assertionResults: {
          ancestorTitles: string[];
          title: string;
          status: string;
          failureMessages: string[];
        }[];
      }[];
    };
    try {
      report = JSON.parse(await readFile(outputFile, "utf8"));
    } catch (err) {
      throw new Error(`conformance suite wrote no report (${String(err)}):\n${output}`);
    }
    const checks = report.testResults.flatMap((f) =>
      f.assertionResults.map((a) => ({
        name: [...a.ancestorTitles, a.title].join(" > "),
        status: a.status,
        messages: a.failureMessages,
      })),
    );
    return {
      checks,
      failed: checks.filter((c) => c.status === "failed"),
      passed: checks.filter((c) => c.status === "passed"),
      output,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function describeFailures(failed: CheckResult[]): string {
  return failed.map((f) => `  ✗ ${f.name}\n      ${(f.messages[0] ?? "").split("\n")[0]}`).join("\n");
}

function knownDistributionFailures(): string[] {
  const file = join(repoRoot, "conformance/known-failures/distribution.json");
  return (JSON.parse(readFileSync(file, "utf8")) as KnownFailures).failures.map((f) => f.test);
}

/** Compares a run's failing checks with an expected list and explains any difference. */
function expectFailuresToBe(run: SuiteRun, expected: string[]): void {
  const got = new Set(run.failed.map((f) => f.name));
  const want = new Set(expected);
  const unexpected = run.failed.filter((f) => !want.has(f.name));
  const nowPassing = expected.filter((n) => !got.has(n));
  const missing = nowPassing.filter((n) => !run.checks.some((c) => c.name === n));
  const explanation = [
    unexpected.length ? `failing but not in the known list:\n${describeFailures(unexpected)}` : "",
    nowPassing.length
      ? `known failures that did not fail:\n${nowPassing.map((n) => `  - ${n}`).join("\n")}`
      : "",
    missing.length ? `(of those, not in the suite at all: ${missing.join("; ")})` : "",
  ]
    .filter(Boolean)
    .join("\n");
  expect([...got].sort(), explanation).toEqual([...want].sort());
}

describe("OCI conformance suite against Kagami", () => {
  let kagami: RunningKagami;

  beforeAll(async () => {
    kagami = await startKagami();
  });

  afterAll(async () => {
    await kagami?.destroy();
  });

  test(
    "every check of all four workflows passes",
    async () => {
      const run = await runSuite(kagami.url, {
        ...ALL_WORKFLOWS,
        OCI_NAMESPACE: "conformance/kagami",
        OCI_CROSSMOUNT_NAMESPACE: "conformance/kagami-crossmount",
      });
      expect(run.checks.length, `no checks ran:\n${run.output}`).toBeGreaterThan(100);
      expect(
        run.failed.map((f) => f.name),
        `failing checks:\n${describeFailures(run.failed)}`,
      ).toEqual([]);
    },
    SUITE_TIMEOUT,
  );
});

describe.skipIf(!hasTool("htpasswd"))("OCI conformance suite against Kagami with accounts", () => {
  let kagami: RunningKagami;

  beforeAll(async () => {
    const dir = await mkdtemp(join(tmpdir(), "kagami-conformance-auth-"));
    const htpasswd = join(dir, "htpasswd");
    writeHtpasswd(htpasswd, [["conformance", "c0nf-pass"]]);
    kagami = await startKagami({ config: { http: { auth: { htpasswd: { path: htpasswd } } } } });
  });

  afterAll(async () => {
    await kagami?.destroy();
  });

  test(
    "every check passes with OCI_USERNAME/OCI_PASSWORD, and nothing passes without them",
    async () => {
      const run = await runSuite(kagami.url, {
        ...ALL_WORKFLOWS,
        OCI_NAMESPACE: "conformance/auth",
        OCI_CROSSMOUNT_NAMESPACE: "conformance/auth-crossmount",
        OCI_USERNAME: "conformance",
        OCI_PASSWORD: "c0nf-pass",
      });
      expect(run.checks.length, `no checks ran:\n${run.output}`).toBeGreaterThan(100);
      expect(
        run.failed.map((f) => f.name),
        `failing checks:\n${describeFailures(run.failed)}`,
      ).toEqual([]);
      const anonymous = await runSuite(kagami.url, { OCI_TEST_PULL: "1", OCI_NAMESPACE: "conformance/anon" });
      expect(anonymous.passed.length).toBeLessThan(anonymous.checks.length / 2);
    },
    SUITE_TIMEOUT,
  );
});

describe.skipIf(!hasTool("docker-registry"))("OCI conformance suite against CNCF distribution 2.8", () => {
  let dist: RunningDistribution;

  beforeAll(async () => {
    dist = await startDistribution();
  });

  afterAll(async () => {
    await dist?.stop();
  });

  test(
    "fails exactly the checks listed in conformance/known-failures/distribution.json",
    async () => {
      const run = await runSuite(dist.url, {
        ...ALL_WORKFLOWS,
        OCI_NAMESPACE: "conformance/distribution",
        OCI_CROSSMOUNT_NAMESPACE: "conformance/distribution-crossmount",
      });
      expect(run.passed.length, `too few checks passed:\n${run.output}`).toBeGreaterThan(80);
      expectFailuresToBe(run, knownDistributionFailures());
    },
    SUITE_TIMEOUT,
  );

  describe("through an authenticating proxy", () => {
    const user = "conformance";
    const password = "s3cret-pass";
    const token = "conformance-token-0123";
    let proxy: Server;
    let proxyUrl = "";
    let mode: "bearer" | "basic" = "bearer";
    const stats = { challenges: 0, tokenRequests: 0, badTokenCredentials: 0, authorized: 0 };

    const basicOk = (req: IncomingMessage) =>
      req.headers.authorization === `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

    beforeAll(async () => {
      proxy = createServer((req, res) => {
        const url = new URL(req.url ?? "/", proxyUrl);
        if (url.pathname === "/token") {
          stats.tokenRequests++;
          if (!basicOk(req) || url.searchParams.get("service") !== "conformance-registry") {
            stats.badTokenCredentials++;
            res.writeHead(401).end();
            return;
          }
          res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify({ token }));
          return;
        }
        const authorized = mode === "bearer" ? req.headers.authorization === `Bearer ${token}` : basicOk(req);
        if (!authorized) {
          stats.challenges++;
          const repo = /^\/v2\/(.+?)\/(?:blobs|manifests|tags|referrers)\//.exec(url.pathname)?.[1];
          const challenge =
            mode === "bearer"
              ? `Bearer realm="${proxyUrl}/token",service="conformance-registry"${repo ? `,scope="repository:${repo}:pull,push,delete"` : ""}`
              : 'Basic realm="conformance"';
          res
            .writeHead(401, { "WWW-Authenticate": challenge, "Content-Type": "application/json" })
            .end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] }));
          return;
        }
        stats.authorized++;
        const headers = { ...req.headers };
        delete headers.authorization;
        const upstream = httpRequest(
          new URL(req.url ?? "/", dist.url),
          { method: req.method, headers },
          (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          },
        );
        upstream.on("error", () => res.writeHead(502).end());
        req.pipe(upstream);
      });
      await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
      proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    });

    afterAll(async () => {
      await new Promise((r) => proxy?.close(r));
    });

    for (const m of ["bearer", "basic"] as const) {
      test(
        `the Pull workflow authenticates with ${m === "bearer" ? "a Bearer token challenge" : "Basic auth"}`,
        async () => {
          mode = m;
          const before = { ...stats };
          const run = await runSuite(proxyUrl, {
            OCI_TEST_PULL: "1",
            OCI_NAMESPACE: `conformance/auth-${m}`,
            OCI_USERNAME: user,
            OCI_PASSWORD: password,
          });
          expect(run.passed.length, `too few checks passed:\n${run.output}`).toBeGreaterThan(20);
          expectFailuresToBe(
            run,
            knownDistributionFailures().filter((n) => n.startsWith("Pull > ")),
          );
          expect(stats.challenges, "the proxy never challenged").toBeGreaterThan(before.challenges);
          expect(stats.authorized - before.authorized, "no request got through").toBeGreaterThan(20);
          expect(stats.badTokenCredentials, "token requests must carry the Basic credentials").toBe(0);
          if (m === "bearer") expect(stats.tokenRequests).toBeGreaterThan(before.tokenRequests);
        },
        SUITE_TIMEOUT,
      );
    }
  });
});
