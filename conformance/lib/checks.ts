/** Assertion helpers shared by the workflows; every message names the request that failed. */
import { expect } from "vitest";
import type { RegistryResponse } from "./client.ts";
import { sha256 } from "./data.ts";

/** The spec's error code table (v1.1, code-1 .. code-14) plus the legacy Docker codes it allows. */
export const ERROR_CODES = [
  "BLOB_UNKNOWN",
  "BLOB_UPLOAD_INVALID",
  "BLOB_UPLOAD_UNKNOWN",
  "DIGEST_INVALID",
  "MANIFEST_BLOB_UNKNOWN",
  "MANIFEST_INVALID",
  "MANIFEST_UNKNOWN",
  "NAME_INVALID",
  "NAME_UNKNOWN",
  "SIZE_INVALID",
  "UNAUTHORIZED",
  "DENIED",
  "UNSUPPORTED",
  "TOOMANYREQUESTS",
  "TAG_INVALID",
  "MANIFEST_UNVERIFIED",
] as const;

export function expectStatus(res: RegistryResponse, ...codes: number[]): void {
  expect(codes, `unexpected status: ${res.describe()}`).toContain(res.status);
}

export function expect2xx(res: RegistryResponse): void {
  expect(res.status >= 200 && res.status < 300, `expected 2xx: ${res.describe()}`).toBe(true);
}

/** Status is 2xx or one of the extra codes (teardown tolerance, as in the official suite). */
export function expect2xxOr(res: RegistryResponse, ...codes: number[]): void {
  const ok = (res.status >= 200 && res.status < 300) || codes.includes(res.status);
  expect(ok, `expected 2xx or ${codes.join("/")}: ${res.describe()}`).toBe(true);
}

export function expectLocation(res: RegistryResponse): string {
  const loc = res.location();
  expect(loc, `missing Location header: ${res.describe()}`).toBeTruthy();
  return loc as string;
}

interface ErrorBody {
  errors?: { code?: unknown; message?: unknown; detail?: unknown }[];
}

/** Whether the body is meant as JSON (content type) or parses as JSON. */
export function isJsonBody(res: RegistryResponse): boolean {
  if (res.body.length === 0) return false;
  const ct = res.header("content-type") ?? "";
  return /json/i.test(ct) || res.json() !== undefined;
}

/**
 * Spec "Error Codes": a 4xx body MAY be in any format, but if it is JSON it MUST be
 * `{"errors":[{"code","message","detail"}]}` with `code` uppercase letters/underscores from the table.
 * Returns the codes found (empty when the body is not JSON).
 */
export function checkErrorBody(res: RegistryResponse): string[] {
  if (!isJsonBody(res)) return [];
  const body = res.json<ErrorBody>();
  expect(body, `error body is not valid JSON: ${res.describe()}`).toBeTypeOf("object");
  expect(Array.isArray(body?.errors), `error body lacks an "errors" array: ${res.describe()}`).toBe(true);
  const errors = body?.errors ?? [];
  expect(errors.length, `error body has an empty "errors" array: ${res.describe()}`).toBeGreaterThan(0);
  const codes: string[] = [];
  for (const e of errors) {
    expect(typeof e.code, `error without a string code: ${res.describe()}`).toBe("string");
    const code = e.code as string;
    expect(code, `error code is not uppercase letters and underscores: ${res.describe()}`).toMatch(
      /^[A-Z_]+$/,
    );
    expect(
      ERROR_CODES as readonly string[],
      `error code ${code} is not in the spec's table: ${res.describe()}`,
    ).toContain(code);
    if (e.message !== undefined) {
      expect(typeof e.message, `error message must be a string: ${res.describe()}`).toBe("string");
    }
    codes.push(code);
  }
  return codes;
}

type ErrorCode = (typeof ERROR_CODES)[number];

/** When the error body is JSON, it must be well formed and contain one of `wanted`. */
export function expectErrorCode(res: RegistryResponse, ...wanted: ErrorCode[]): void {
  const codes = checkErrorBody(res);
  if (codes.length === 0) return;
  const hit = codes.some((c) => (wanted as string[]).includes(c));
  expect(hit, `expected error code ${wanted.join(" or ")}: ${res.describe()}`).toBe(true);
}

/** Docker-Content-Digest is optional, but when present it MUST match the content. */
export function expectDigestHeaderIfPresent(res: RegistryResponse, digest: string): void {
  const h = res.header("docker-content-digest");
  if (h !== null) expect(h, `Docker-Content-Digest mismatch: ${res.describe()}`).toBe(digest);
}

export function expectBody(res: RegistryResponse, content: Buffer): void {
  expect(sha256(res.body), `body does not match the expected content: ${res.describe()}`).toBe(
    sha256(content),
  );
}

/**
 * Spec "Warnings": a `Warning` header MUST use warn-code 299 and warn-agent `-`, MUST NOT carry a
 * warn-date, and all warning headers of a response together MUST NOT exceed 4096 bytes.
 */
export function checkWarningValues(request: string, values: string[]): void {
  let total = 0;
  for (const v of values) {
    total += Buffer.byteLength(v);
    expect(v, `Warning header of ${request} must be 299 - "<text>" without a date`).toMatch(
      /^299 - "(?:[^"\\]|\\.)*"$/,
    );
  }
  expect(total, `more than 4096 bytes of warnings on ${request}`).toBeLessThanOrEqual(4096);
}
