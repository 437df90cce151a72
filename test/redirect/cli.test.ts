/** A rule's range file is read before anything starts: `serve` and `verify` name the field and the file. */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { kagamiBin } from "../helpers/kagami.ts";

const dir = mkdtempSync(join(tmpdir(), "kagami-redirect-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function kagami(...args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [kagamiBin, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, output: stdout + stderr });
    });
  });
}

describe("redirect rules at start", () => {
  const config = join(dir, "config.json");
  const ranges = join(dir, "ranges.txt");
  writeFileSync(
    config,
    JSON.stringify({
      storage: { rootDirectory: join(dir, "data") },
      http: { address: "127.0.0.1", port: "0" },
      extensions: {
        redirect: {
          rules: [
            {
              name: "eu",
              networkFiles: [{ path: ranges, format: "plain" }],
              baseUrl: "https://eu.example",
            },
          ],
        },
      },
    }),
  );

  it("refuses a malformed range file in verify and serve, naming the field and the line", async () => {
    writeFileSync(ranges, "10.1.0.0/16\n10.1.0.0/33\n");
    const field = "extensions.redirect.rules[0].networkFiles[0]";
    const verify = await kagami("verify", "--config", config);
    expect(verify.code).toBe(1);
    expect(verify.output).toContain(`${field}: ${ranges}: line 2: "10.1.0.0/33" is not a CIDR`);
    const serve = await kagami("serve", "--config", config);
    expect(serve.code).toBe(1);
    expect(serve.output).toContain(`${field}: ${ranges}: line 2`);
  });

  it("accepts it once fixed", async () => {
    writeFileSync(ranges, "# EU\n10.1.0.0/16\n");
    const verify = await kagami("verify", "--config", config);
    expect(verify).toMatchObject({ code: 0 });
  });
});
