import { describe, expect, it } from "vitest";
import { parseAuthorization } from "../../src/auth/credentials.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("Authorization header", () => {
  it("reads Basic credentials, with colons allowed in the password", () => {
    expect(parseAuthorization(`Basic ${b64("u:p:q")}`)).toEqual({
      kind: "basic",
      user: "u",
      password: "p:q",
    });
    expect(parseAuthorization(`basic ${b64("u:")}`)).toEqual({ kind: "basic", user: "u", password: "" });
  });
  it("treats containers/image's empty ':' credentials as anonymous", () => {
    expect(parseAuthorization(`Basic ${b64(":")}`)).toEqual({ kind: "none" });
    expect(parseAuthorization(undefined)).toEqual({ kind: "none" });
  });
  it("reads a Bearer token as it is, for the access state to check", () => {
    expect(parseAuthorization("Bearer abc.def")).toEqual({ kind: "bearer", token: "abc.def" });
  });
  it.each([
    "Digest x",
    "Bearer",
    "Basic",
    "Basic a b",
    "Basic %%%",
    `Basic ${b64("nocolon")}`,
    `Basic ${b64(":pw")}`,
  ])("reports %s as malformed", (h) => expect(parseAuthorization(h).kind).toBe("malformed"));
});
