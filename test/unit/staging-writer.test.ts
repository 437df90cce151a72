/**
 * StagingWriter (src/sync/staging-writer.ts) against real files in a temp dir. The only stand-ins
 * for a FileHandle are thin wrappers around a real one, used where a short write or a failure in
 * the middle of a stream must be forced; a failure from the start uses a real read-only handle.
 */
import { createHash, randomBytes } from "node:crypto";
import { fstatSync, mkdtempSync, readFileSync, readSync, rmSync } from "node:fs";
import { type FileHandle, open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setImmediate as immediate, setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { prng } from "../../bench/lib/util.ts";
import { StagingWriter } from "../../src/sync/staging-writer.ts";

const KiB = 1024;
const MiB = 1024 * KiB;

const dir = mkdtempSync(join(tmpdir(), "kagami-staging-writer-"));
let fileNo = 0;
const handles: FileHandle[] = [];

afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  for (const fh of handles.splice(0)) await fh.close().catch(() => {});
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A new empty file opened for writing (and reading, so that its size can be checked through it). */
async function newFile(): Promise<{ path: string; fh: FileHandle }> {
  const path = join(dir, `f${fileNo++}`);
  const fh = await open(path, "w+");
  handles.push(fh);
  return { path, fh };
}

/** A new empty file opened read-only: every write to it fails with EBADF. */
async function readOnlyFile(): Promise<{ path: string; fh: FileHandle }> {
  const { path, fh: rw } = await newFile();
  await rw.close();
  const fh = await open(path, "r");
  handles.push(fh);
  return { path, fh };
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Sizes from 1 to max, log-uniform so that tiny, middling and large views all occur. */
function viewSizes(rand: () => number, total: number, max: number): number[] {
  const sizes: number[] = [];
  let left = total;
  while (left > 0) {
    const n = Math.min(left, Math.max(1, Math.floor(Math.exp(rand() * Math.log(max + 1)))));
    sizes.push(n);
    left -= n;
  }
  return sizes;
}

/** Polls (without timers, so that it works under fake timers too) until `cond` holds or `ms` pass. */
async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = performance.now() + ms;
  while (!cond()) {
    if (performance.now() > deadline) return false;
    await immediate();
  }
  return true;
}

/**
 * Records onWritten and, inside each call, checks the prefix property against `source`: the file
 * is exactly as long as the sum reported so far (no write landed ahead of the prefix) and the
 * bytes just reported equal the source there. By induction the file is always a source prefix.
 */
function recorder(fh: FileHandle, source?: Buffer) {
  const rec = {
    calls: [] as number[],
    sum: 0,
    problems: [] as string[],
    errors: [] as Error[],
    onWritten: (n: number) => {
      rec.calls.push(n);
      rec.sum += n;
      if (!source) return;
      const size = fstatSync(fh.fd).size;
      if (size !== rec.sum) rec.problems.push(`after ${rec.calls.length} writes: size ${size} != ${rec.sum}`);
      const got = Buffer.alloc(n);
      readSync(fh.fd, got, 0, n, rec.sum - n);
      if (!got.equals(source.subarray(rec.sum - n, rec.sum))) {
        rec.problems.push(`bytes [${rec.sum - n}, ${rec.sum}) differ from the source`);
      }
    },
    onError: (err: Error) => {
      rec.errors.push(err);
    },
  };
  return rec;
}

describe("StagingWriter: content and order", () => {
  it("writes ~40 MiB of random views (1 B to 3 MiB) through 3 × 64 KiB buffers as one exact, growing prefix", async () => {
    const total = 40 * MiB + 12_345;
    const source = randomBytes(total);
    const rand = prng(0x5eed);
    const sizes = viewSizes(rand, total, 3 * MiB);
    expect(Math.max(...sizes)).toBeGreaterThan(MiB);
    expect(Math.min(...sizes)).toBeLessThan(1 * KiB);

    const { path, fh } = await newFile();
    const rec = recorder(fh, source);
    const bufferSize = 64 * KiB;
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize, buffers: 3 });

    // Like the real producer, views live in one reused buffer that is overwritten once write()
    // returns: the writer must have copied them by then.
    const scratch = Buffer.allocUnsafe(3 * MiB);
    let offset = 0;
    let falses = 0;
    for (const n of sizes) {
      source.copy(scratch, 0, offset, offset + n);
      if (!writer.write(scratch.subarray(0, n), 64 * KiB)) falses++;
      scratch.fill(0xa5, 0, n);
      offset += n;
      // Let writes proceed between some views, so copying in and writing out interleave.
      if (rand() < 0.5) await immediate();
    }
    await writer.finish();

    expect(rec.errors).toEqual([]);
    expect(rec.problems).toEqual([]);
    expect(falses).toBeGreaterThan(0);
    expect(rec.sum).toBe(total);
    expect(rec.calls.every((n) => n > 0 && n <= bufferSize)).toBe(true);
    const written = readFileSync(path);
    expect(written.length).toBe(total);
    expect(sha256(written)).toBe(sha256(source));
  });

  it("keeps file order when the handle writes fewer bytes than asked (short writes)", async () => {
    const total = 3 * MiB + 777;
    const source = randomBytes(total);
    const { path, fh: real } = await newFile();
    const rand = prng(42);
    let shortWrites = 0;
    const short = {
      fd: real.fd,
      write: (buf: Buffer, off: number, len: number, pos: number) => {
        const n = Math.max(1, Math.min(len, Math.floor(rand() * 70_000)));
        if (n < len) shortWrites++;
        return real.write(buf, off, n, pos);
      },
    } as unknown as FileHandle;
    const rec = recorder(real, source);
    const writer = new StagingWriter(short, rec.onWritten, rec.onError, { bufferSize: 64 * KiB, buffers: 3 });
    let offset = 0;
    for (const n of viewSizes(rand, total, 512 * KiB)) {
      writer.write(source.subarray(offset, offset + n), 64 * KiB);
      offset += n;
      if (rand() < 0.3) await immediate();
    }
    await writer.finish();
    expect(shortWrites).toBeGreaterThan(0);
    expect(rec.errors).toEqual([]);
    expect(rec.problems).toEqual([]);
    expect(rec.sum).toBe(total);
    expect(sha256(readFileSync(path))).toBe(sha256(source));
  });
});

describe("StagingWriter: backpressure", () => {
  it("a producer that honours write() = false and whenRoom never needs more than `buffers` buffers", async () => {
    // An odd size, so that counting allocations of exactly this size counts only the writer's.
    const bufferSize = 65_521;
    const buffers = 3;
    const reserve = 100_000; // the largest view; at most (buffers - 1) × bufferSize
    const allocUnsafe = vi.spyOn(Buffer, "allocUnsafe");
    const total = 6 * MiB + 3;
    const source = randomBytes(total);
    const rand = prng(7);
    const { path, fh } = await newFile();
    const rec = recorder(fh, source);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize, buffers });

    let offset = 0;
    let pauses = 0;
    let syncCallbacks = 0;
    for (const n of viewSizes(rand, total, reserve)) {
      const ok = writer.write(source.subarray(offset, offset + n), reserve);
      offset += n;
      if (ok) continue;
      pauses++;
      let called = 0;
      let sync = true;
      await new Promise<void>((resolve) => {
        writer.whenRoom(reserve, () => {
          called++;
          if (sync) syncCallbacks++;
          resolve();
        });
        sync = false;
      });
      expect(called).toBe(1);
    }
    await writer.finish();

    expect(pauses).toBeGreaterThan(10);
    // write() had just said there is no room, so whenRoom cannot call back before a write ends.
    expect(syncCallbacks).toBe(0);
    const allocated = allocUnsafe.mock.calls.filter(([size]) => size === bufferSize).length;
    expect(allocated).toBeGreaterThan(0);
    expect(allocated).toBeLessThanOrEqual(buffers);
    expect(rec.errors).toEqual([]);
    expect(rec.problems).toEqual([]);
    expect(rec.sum).toBe(total);
    expect(sha256(readFileSync(path))).toBe(sha256(source));
  });

  it("returns false when less than `reserve` bytes of room are left, yet still takes every byte", async () => {
    const { path, fh } = await newFile();
    const rec = recorder(fh);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize: 64 * KiB, buffers: 3 });
    // 192 KiB of room in all.
    expect(writer.write(Buffer.alloc(100 * KiB, 1), 64 * KiB)).toBe(true); // 92 KiB left
    expect(writer.write(Buffer.alloc(40 * KiB, 2), 64 * KiB)).toBe(false); // 52 KiB left
    expect(writer.write(Buffer.alloc(0), 52 * KiB)).toBe(true);
    expect(writer.write(Buffer.alloc(0), 52 * KiB + 1)).toBe(false);
    // A producer that ignores false: each view is still taken, far beyond the buffers' size.
    const parts = [Buffer.alloc(100 * KiB, 1), Buffer.alloc(40 * KiB, 2)];
    for (let i = 0; i < 40; i++) {
      const view = randomBytes(1 + ((i * 7919) % (90 * KiB)));
      parts.push(view);
      expect(writer.write(view, 64 * KiB)).toBe(false);
    }
    await writer.finish();
    const source = Buffer.concat(parts);
    expect(source.length).toBeGreaterThan(1 * MiB);
    expect(rec.errors).toEqual([]);
    expect(rec.sum).toBe(source.length);
    expect(readFileSync(path).equals(source)).toBe(true);
  });

  it("whenRoom calls back at once when there is room, and later (exactly once) when room comes back", async () => {
    const { fh } = await newFile();
    const rec = recorder(fh);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize: 64 * KiB, buffers: 3 });
    let now = 0;
    writer.whenRoom(192 * KiB, () => now++);
    expect(now).toBe(1);

    expect(writer.write(randomBytes(300 * KiB), 64 * KiB)).toBe(false);
    let later = 0;
    let sumAtCallback = -1;
    writer.whenRoom(64 * KiB, () => {
      later++;
      sumAtCallback = rec.sum;
    });
    expect(later).toBe(0);
    expect(await until(() => later === 1, 2000)).toBe(true);
    // 300 KiB fill five 64 KiB buffers; room for 64 KiB means at most two are still unwritten.
    expect(sumAtCallback).toBeGreaterThanOrEqual(3 * 64 * KiB);
    expect(writer.write(randomBytes(0), 64 * KiB)).toBe(true);
    await writer.finish();
    expect(later).toBe(1);
    expect(rec.sum).toBe(300 * KiB);
    expect(rec.errors).toEqual([]);
  });

  it("asks for no more room than it has: a reserve above the capacity means all of it", async () => {
    const { path, fh } = await newFile();
    const rec = recorder(fh);
    // A small blob's writer: one 4 KiB buffer, asked for 1 MiB of room as the mirror does.
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize: 4 * KiB, buffers: 1 });
    expect(writer.write(Buffer.alloc(3 * KiB, 7), MiB)).toBe(false);
    let called = 0;
    writer.whenRoom(MiB, () => called++);
    expect(await until(() => called === 1, 2000)).toBe(true);
    expect(writer.write(Buffer.alloc(KiB, 7), MiB)).toBe(false);
    await writer.finish();
    expect(readFileSync(path)).toEqual(Buffer.alloc(4 * KiB, 7));
  });

  it("gives back the whole capacity once everything is written, even from a part-filled buffer", async () => {
    const { path, fh } = await newFile();
    const rec = recorder(fh);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize: 64 * KiB, buffers: 3 });
    // One byte leaves less than all three buffers free until it is on disk.
    expect(writer.write(Buffer.alloc(1), 192 * KiB)).toBe(false);
    let called = 0;
    writer.whenRoom(192 * KiB, () => called++);
    expect(await until(() => called === 1, 2000)).toBe(true);
    expect(writer.write(Buffer.alloc(100 * KiB, 2), 64 * KiB)).toBe(true);
    await writer.finish();
    expect(rec.sum).toBe(100 * KiB + 1);
    const file = readFileSync(path);
    expect(file.length).toBe(100 * KiB + 1);
    expect(file.subarray(1).every((b) => b === 2)).toBe(true);
  });
});

describe("StagingWriter: holding small writes", () => {
  it("writes a small view alone, without finish(), for readers tailing the file", async () => {
    const { fh } = await newFile();
    const rec = recorder(fh);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError); // default 4 MiB buffers
    expect(writer.write(Buffer.from("0123456789"), MiB)).toBe(true);
    // Held back a few milliseconds at most; the bound here only tells "written" from "never written".
    expect(await until(() => rec.sum === 10, 5_000)).toBe(true);
    expect(fstatSync(fh.fd).size).toBe(10);
    expect((await fh.read(Buffer.alloc(10), 0, 10, 0)).buffer.toString()).toBe("0123456789");
    expect(rec.calls).toEqual([10]);

    // And again once the writer has been idle: the next small view is not stuck either.
    await sleep(20);
    writer.write(Buffer.from("abc"), MiB);
    expect(await until(() => rec.sum === 13, 5_000)).toBe(true);
    expect(rec.calls).toEqual([10, 3]);
    await writer.finish();
    expect(rec.errors).toEqual([]);
  });

  it("gathers small views that come together into one write", async () => {
    const { path, fh } = await newFile();
    const rec = recorder(fh);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize: 64 * KiB, buffers: 3 });
    const parts: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      const view = randomBytes(100);
      parts.push(view);
      writer.write(view, KiB);
    }
    expect(await until(() => rec.sum === 10_000, 5_000)).toBe(true);
    expect(rec.calls).toEqual([10_000]);
    await writer.finish();
    expect(readFileSync(path).equals(Buffer.concat(parts))).toBe(true);
  });

  it("holds less than a full write for 5 ms only; a full buffer, 1 MiB, or finish() go at once (fake timers)", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });

    // Small and alone: held until the 5 ms timer.
    const a = await newFile();
    const recA = recorder(a.fh);
    const held = new StagingWriter(a.fh, recA.onWritten, recA.onError);
    held.write(randomBytes(1000), MiB);
    expect(await until(() => recA.sum > 0, 30)).toBe(false);
    vi.advanceTimersByTime(4);
    expect(await until(() => recA.sum > 0, 30)).toBe(false);
    vi.advanceTimersByTime(1);
    expect(await until(() => recA.sum === 1000, 1000)).toBe(true);

    // finish() writes a held remainder without waiting for the timer.
    held.write(randomBytes(24), MiB);
    await held.finish();
    expect(recA.sum).toBe(1024);
    expect(fstatSync(a.fh.fd).size).toBe(1024);

    // A buffer that is full is written without the timer.
    const b = await newFile();
    const recB = recorder(b.fh);
    const full = new StagingWriter(b.fh, recB.onWritten, recB.onError, { bufferSize: 4096, buffers: 2 });
    full.write(randomBytes(4096 + 10), 4096);
    expect(await until(() => recB.sum === 4096, 1000)).toBe(true);
    expect(await until(() => recB.sum > 4096, 30)).toBe(false);
    vi.advanceTimersByTime(5);
    expect(await until(() => recB.sum === 4106, 1000)).toBe(true);

    // 1 MiB or more pending in a larger buffer is written without the timer.
    const c = await newFile();
    const recC = recorder(c.fh);
    const big = new StagingWriter(c.fh, recC.onWritten, recC.onError);
    big.write(randomBytes(MiB), MiB);
    expect(await until(() => recC.sum === MiB, 1000)).toBe(true);

    for (const rec of [recA, recB, recC]) expect(rec.errors).toEqual([]);
  });
});

describe("StagingWriter: finish and idle", () => {
  it("finish() with nothing written resolves, writes nothing, and reports nothing", async () => {
    const { path, fh } = await newFile();
    const rec = recorder(fh);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError);
    await writer.finish();
    expect(rec.calls).toEqual([]);
    expect(rec.errors).toEqual([]);
    expect(readFileSync(path).length).toBe(0);
  });

  it("finish() resolves only once every byte is in the file", async () => {
    const { path, fh } = await newFile();
    const total = 5 * MiB + 17; // whole buffers, then a small held tail
    const source = randomBytes(total);
    const rec = recorder(fh, source);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize: 64 * KiB, buffers: 3 });
    writer.write(source, 64 * KiB);
    expect(rec.sum).toBe(0); // nothing can be in the file yet
    let sumAtResolve = -1;
    let sizeAtResolve = -1;
    await writer.finish().then(() => {
      sumAtResolve = rec.sum;
      sizeAtResolve = fstatSync(fh.fd).size;
    });
    expect(sumAtResolve).toBe(total);
    expect(sizeAtResolve).toBe(total);
    expect(rec.problems).toEqual([]);
    expect(sha256(readFileSync(path))).toBe(sha256(source));
  });

  it("idle() waits for the write in flight; nothing is written after it, so the file may be closed", async () => {
    const { fh } = await newFile();
    const rec = recorder(fh);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize: 64 * KiB, buffers: 3 });
    writer.write(randomBytes(200 * KiB), 64 * KiB); // a write starts at once
    await writer.idle();
    const callsAtIdle = rec.calls.length;
    expect(callsAtIdle).toBeGreaterThan(0);
    await fh.close();
    await sleep(30);
    expect(rec.calls.length).toBe(callsAtIdle);
    expect(rec.errors).toEqual([]);

    // A small held view is dropped by idle(), not written to a closed file later.
    const b = await newFile();
    const recB = recorder(b.fh);
    const small = new StagingWriter(b.fh, recB.onWritten, recB.onError);
    small.write(randomBytes(10), MiB);
    await small.idle();
    await b.fh.close();
    await sleep(30);
    expect(recB.calls).toEqual([]);
    expect(recB.errors).toEqual([]);
  });
});

describe("StagingWriter: a failing write", () => {
  it("calls onError once, rejects finish() with that error, and still calls a paused producer back", async () => {
    const { fh } = await readOnlyFile();
    const rec = recorder(fh);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError, { bufferSize: 64 * KiB, buffers: 3 });
    expect(writer.write(randomBytes(200 * KiB), 64 * KiB)).toBe(false);
    let resumed = 0;
    writer.whenRoom(64 * KiB, () => resumed++);
    expect(resumed).toBe(0);
    const finished = writer.finish();
    const err = await finished.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(rec.errors).toHaveLength(1);
    expect(err).toBe(rec.errors[0]);
    expect((err as NodeJS.ErrnoException).code).toBe("EBADF");
    expect(resumed).toBe(1);
    expect(rec.calls).toEqual([]);

    // After the failure: more views are taken but nothing is written or reported again, a
    // producer asking for room is called back at once, and finish() rejects again.
    writer.write(randomBytes(300 * KiB), 64 * KiB);
    let again = 0;
    writer.whenRoom(64 * KiB, () => again++);
    expect(again).toBe(1);
    await expect(writer.finish()).rejects.toBe(err);
    await writer.idle();
    await sleep(20);
    expect(rec.errors).toHaveLength(1);
    expect(rec.calls).toEqual([]);
    expect(resumed).toBe(1);
  });

  it("a failing held write (no finish() yet) also reports once; finish() called afterwards rejects", async () => {
    const { fh } = await readOnlyFile();
    const rec = recorder(fh);
    const writer = new StagingWriter(fh, rec.onWritten, rec.onError);
    writer.write(randomBytes(10), MiB);
    expect(await until(() => rec.errors.length > 0, 5_000)).toBe(true);
    await expect(writer.finish()).rejects.toBe(rec.errors[0]);
    writer.write(randomBytes(10), MiB);
    await sleep(20);
    expect(rec.errors).toHaveLength(1);
    expect(rec.calls).toEqual([]);
  });

  it("a failure in mid-stream leaves the prefix written before it and stops writing", async () => {
    const { path, fh: real } = await newFile();
    let writes = 0;
    const failing = {
      fd: real.fd,
      write: (buf: Buffer, off: number, len: number, pos: number) => {
        writes++;
        if (writes === 3) return Promise.reject(Object.assign(new Error("disk full"), { code: "ENOSPC" }));
        return real.write(buf, off, len, pos);
      },
    } as unknown as FileHandle;
    const source = randomBytes(MiB);
    const rec = recorder(real, source);
    const writer = new StagingWriter(failing, rec.onWritten, rec.onError, {
      bufferSize: 64 * KiB,
      buffers: 3,
    });
    let resumed = 0;
    for (let off = 0; off < source.length; off += 128 * KiB) {
      if (!writer.write(source.subarray(off, off + 128 * KiB), 64 * KiB)) {
        await new Promise<void>((resolve) => writer.whenRoom(64 * KiB, resolve));
        resumed++;
      }
    }
    await expect(writer.finish()).rejects.toThrow("disk full");
    await writer.idle();
    await sleep(20);
    expect(resumed).toBeGreaterThan(0);
    expect(rec.errors).toHaveLength(1);
    expect(writes).toBe(3);
    expect(rec.calls).toEqual([64 * KiB, 64 * KiB]);
    expect(rec.problems).toEqual([]);
    expect(readFileSync(path).equals(source.subarray(0, 128 * KiB))).toBe(true);
  });
});
