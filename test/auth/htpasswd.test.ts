import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { HtpasswdAccounts } from "../../src/auth/htpasswd.ts";
import { appendHtpasswd, type HashKind, writeHtpasswd } from "../helpers/htpasswd.ts";
import { hasTool } from "../helpers/tools.ts";

const dir = mkdtempSync(join(tmpdir(), "kagami-htpasswd-"));
const logger = pino({ level: "silent" });
const open: HtpasswdAccounts[] = [];
afterAll(() => {
  for (const a of open) a.close();
});

describe.runIf(hasTool("htpasswd"))("htpasswd accounts", () => {
  it.each<HashKind>(["bcrypt", "apr1", "sha1", "sha256", "sha512"])("verifies %s hashes", async (kind) => {
    const file = join(dir, `${kind}.htpasswd`);
    writeHtpasswd(file, [["alice", "s3cret:with:colons", kind]]);
    const accounts = new HtpasswdAccounts(file, logger);
    open.push(accounts);
    expect(await accounts.verify("alice", "s3cret:with:colons")).toBe(true);
    expect(await accounts.verify("alice", "wrong")).toBe(false);
    expect(await accounts.verify("bob", "s3cret:with:colons")).toBe(false);
  });

  it("re-reads the file when it changes, and keeps the last good accounts when it breaks", async () => {
    const file = join(dir, "reload.htpasswd");
    writeHtpasswd(file, [["alice", "one"]]);
    const accounts = new HtpasswdAccounts(file, logger);
    open.push(accounts);
    expect(await accounts.verify("bob", "two")).toBe(false);
    appendHtpasswd(file, "bob", "two");
    await expect.poll(() => accounts.verify("bob", "two"), { timeout: 5000, interval: 200 }).toBe(true);
    writeFileSync(file, "garbage without a colon\n");
    await new Promise((r) => setTimeout(r, 2500));
    expect(await accounts.verify("alice", "one")).toBe(true);
  });
});
