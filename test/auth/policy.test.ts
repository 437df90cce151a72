import { describe, expect, it } from "vitest";
import { AccessPolicy, normalizeAccessControl } from "../../src/auth/policy.ts";

const acl = normalizeAccessControl({
  groups: { devs: { users: ["dana"] } },
  repositories: {
    "**": { anonymousPolicy: ["read"], defaultPolicy: ["read"] },
    "infra/*": { policies: [{ users: ["ivan"], actions: ["read", "create", "update"] }], defaultPolicy: [] },
    "team/**": { policies: [{ groups: ["devs"], actions: ["read", "create"] }] },
  },
  adminPolicy: { users: ["root"], actions: ["read", "create", "update", "delete"] },
});
const policy = new AccessPolicy(acl, true);
const u = (user: string) => ({ user });

describe("access policy", () => {
  it("lets the longest matching pattern win", () => {
    expect(policy.allowed(undefined, "library/alpine", "read")).toBe(true);
    // infra/* is longer than ** and has no anonymous policy.
    expect(policy.allowed(undefined, "infra/dns", "read")).toBe(false);
    expect(policy.allowed(u("ivan"), "infra/dns", "create")).toBe(true);
    expect(policy.allowed(u("dana"), "infra/dns", "read")).toBe(false);
    // `*` does not cross a slash, so infra/a/b falls back to **.
    expect(policy.allowed(u("dana"), "infra/a/b", "read")).toBe(true);
  });
  it("grants through groups and makes tags immutable when update is missing", () => {
    expect(policy.allowed(u("dana"), "team/app", "create")).toBe(true);
    expect(policy.allowed(u("dana"), "team/app", "update")).toBe(false);
  });
  it("gives admins every action everywhere", () => {
    expect(policy.allowed(u("root"), "infra/dns", "delete")).toBe(true);
  });
  it("without accessControl: accounts may do all, anonymous nothing; without accounts everyone may", () => {
    const authOnly = new AccessPolicy(undefined, true);
    expect(authOnly.allowed(u("x"), "a", "delete")).toBe(true);
    expect(authOnly.allowed(undefined, "a", "read")).toBe(false);
    expect(new AccessPolicy(undefined, false).allowed(undefined, "a", "delete")).toBe(true);
  });
  it("accepts zot's older form with patterns directly under accessControl", () => {
    const old = normalizeAccessControl({
      "**": { anonymousPolicy: ["read"] },
      adminPolicy: { users: ["a"] },
    });
    expect(Object.keys(old.repositories!)).toEqual(["**"]);
    expect(new AccessPolicy(old, true).allowed(undefined, "x/y", "read")).toBe(true);
  });
});
