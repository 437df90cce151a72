/**
 * `kagami validate` against a pull-only front: a Kagami redirector (archeio's role) has no write
 * methods, and its 405 to a push is a refusal, not a registry that let the push past its checks.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningKagami, startKagami } from "../helpers/kagami.ts";
import { validateJson } from "./common.ts";

describe("kagami validate against a redirector", () => {
  let redirector: RunningKagami;

  beforeAll(async () => {
    // Nothing is pulled here, so the upstream is never asked.
    redirector = await startKagami({
      config: { extensions: { redirect: { mode: "redirector", upstream: { url: "https://up.example" } } } },
    });
  }, 30_000);

  afterAll(async () => {
    await redirector?.destroy();
  });

  it("counts a 405 to a push as refused, anonymous or read-only", async () => {
    const { code, report } = await validateJson("--registry", redirector.url, "--ro-creds", "reader:secret");
    expect(report.access.map((a) => [a.check, a.status])).toEqual([
      ["anonymous-ping", "pass"],
      ["anonymous-push", "pass"],
      ["ro-pull", "pass"],
      ["ro-push", "pass"],
    ]);
    expect(report.access.find((a) => a.check === "anonymous-push")?.message).toMatch(/refused with HTTP 405/);
    expect(code).toBe(0);
  });

  it("says a push it could not send was not tried, not that it got past the access check", async () => {
    const { code, report } = await validateJson("--registry", "http://127.0.0.1:1", "--retry-times", "0");
    const push = report.access.find((a) => a.check === "anonymous-push");
    expect(push?.status).toBe("fail");
    expect(push?.message).toMatch(/could not be tried: .*ECONNREFUSED/);
    expect(code).toBe(1);
  });
});
