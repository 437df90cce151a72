import type { IncomingMessage } from "node:http";
import { RegistryError } from "../oci/errors.ts";

export interface ByteRange {
  start: number;
  end: number;
}

/** Parses an upload's `Content-Range: <start>-<end>` (distribution's form; `bytes ` prefix tolerated). */
export function parseContentRange(value: string | undefined): ByteRange | undefined {
  if (value === undefined || value === "") return undefined;
  const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(?:\d+|\*))?$/.exec(value.trim());
  if (!m) {
    throw new RegistryError(
      "BLOB_UPLOAD_INVALID",
      `Content-Range '${value.slice(0, 80)}' is not of the form <start>-<end>`,
      {
        status: 416,
      },
    );
  }
  const range = { start: Number(m[1]), end: Number(m[2]) };
  if (range.end < range.start) {
    throw new RegistryError("BLOB_UPLOAD_INVALID", `Content-Range '${value}' ends before it starts`, {
      status: 416,
    });
  }
  return range;
}

export type RangeRequest = { kind: "all" } | { kind: "range"; range: ByteRange } | { kind: "unsatisfiable" };

/** A single `Range: bytes=...` request against a blob of `size` bytes; several ranges are served whole. */
export function parseRangeHeader(value: string | undefined, size: number): RangeRequest {
  if (!value) return { kind: "all" };
  const m = /^bytes=(\d*)-(\d*)$/.exec(value.trim());
  if (!m || (m[1] === "" && m[2] === "")) return { kind: "all" };
  let start: number;
  let end: number;
  if (m[1] === "") {
    const suffix = Number(m[2]);
    if (suffix === 0) return { kind: "unsatisfiable" };
    start = Math.max(size - suffix, 0);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
    if (m[2] !== "" && Number(m[2]) < start) return { kind: "all" };
  }
  if (start >= size) return { kind: "unsatisfiable" };
  return { kind: "range", range: { start, end } };
}

/** Whether the request carries a body (a final chunk on PUT, data on POST). */
export function hasBody(req: IncomingMessage): boolean {
  const len = req.headers["content-length"];
  if (len !== undefined) return Number(len) > 0;
  return req.headers["transfer-encoding"] !== undefined;
}

/** Reads a small body (a manifest) with a hard cap, refusing early on a too-large Content-Length. */
export async function readLimited(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? Number.NaN);
  const tooLarge = (n: number) =>
    new RegistryError("MANIFEST_INVALID", `manifest is ${n} bytes or more; the limit is ${limit} bytes`, {
      status: 413,
    });
  if (declared > limit) throw tooLarge(declared);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    total += (chunk as Buffer).length;
    if (total > limit) {
      req.resume();
      throw tooLarge(total);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, total);
}

/** `n` of a paginated list: absent, or a non-negative integer. */
export function parsePageSize(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = Array.isArray(value) ? value[0]! : value;
  if (!/^\d{1,9}$/.test(v)) {
    throw new RegistryError(
      "PAGINATION_NUMBER_INVALID",
      `n must be a non-negative integer, not '${v.slice(0, 40)}'`,
    );
  }
  return Number(v);
}

export function queryString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
