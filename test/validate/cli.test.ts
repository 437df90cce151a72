/** The built `kagami validate` command: exit codes, the text report, the JSON report's shape. */
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { validateCommand } from "../../src/cli/validate.ts";
import { cli } from "../helpers/cli.ts";
import { kagamiBin } from "../helpers/kagami.ts";
import { type RunningNginx, startNginx } from "../helpers/nginx.ts";
import { hasTool } from "../helpers/tools.ts";
import { releaseFiles } from "./common.ts";

const run = promisify(execFile);

async function kagami(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [kagamiBin, "validate", ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe.runIf(hasTool("nginx"))("kagami validate (the command)", () => {
  let work: string;
  let files: RunningNginx;
  let release: Awaited<ReturnType<typeof releaseFiles>>;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), "kagami-validate-cli-"));
    await mkdir(join(work, "files"));
    release = await releaseFiles(join(work, "files"));
    files = await startNginx({ root: join(work, "files") });
  });

  afterAll(async () => {
    await files?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("exits 0 and prints a pass report when every check passes", async () => {
    const r = await kagami("--artifacts", files.url, "--file", release.files.kubectl!);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`PASS  file ${release.files.kubectl}: 64.0 KiB, sha256 and sha512 match`);
    expect(r.stdout).toMatch(/^Result: PASS \(1 passed, 0 failed, 0 warnings\)$/m);
  });

  it("exits 1 on a failed check and gives the JSON report with --output json", async () => {
    const r = await kagami("--artifacts", files.url, "--file", release.files.bad!, "-o", "json");
    expect(r.code).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report).toEqual({
      ok: false,
      artifacts: files.url,
      images: [],
      files: [
        {
          path: release.files.bad,
          url: `${files.url}/${release.files.bad}`,
          status: "fail",
          message: expect.stringMatching(/^sha256 is [0-9a-f]{64}, but /),
          size: 64 * 1024 + 17,
          host: files.host,
          redirects: [],
          checksums: [
            { algorithm: "sha256", expected: "0".repeat(64), actual: expect.any(String), status: "mismatch" },
            {
              algorithm: "sha512",
              expected: expect.any(String),
              actual: expect.any(String),
              status: "match",
            },
          ],
        },
      ],
      access: [],
      summary: { passed: 0, failed: 1, warnings: 0 },
    });
  });

  it("exits 2 on a usage error, before any network traffic", async () => {
    for (const args of [
      [],
      ["--file", "x"],
      ["--artifacts", files.url],
      ["--registry", "127.0.0.1:1", "--image", "Bad:Name"],
      ["--registry", "https://user:pw@127.0.0.1:1"],
      ["--registry", "https://127.0.0.1:1/v2"],
      ["--registry", "127.0.0.1:1", "--output", "yaml"],
      ["--registry", "127.0.0.1:1", "--ro-creds", "reader"],
      ["--registry", "127.0.0.1:1", "--scratch-repo", "../../x"],
    ]) {
      const r = await cli(validateCommand, ...args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr).toMatch(/^kagami validate: .*\n\(see kagami validate --help\)\n$/);
    }
    const spawned = await kagami("--file", "x");
    expect(spawned.code).toBe(2);
    expect(spawned.stderr).toContain("give --registry URL, --artifacts URL or both");
  });

  it("prints its help", async () => {
    const r = await kagami("--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: kagami validate --registry URL/);
  });
});
