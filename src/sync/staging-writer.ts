import type { FileHandle } from "node:fs/promises";

const defaultBufferSize = 4 * 1024 * 1024;
const defaultBuffers = 4;
/** Less than this waiting to be written is held back a moment, so that writes stay large. */
const minWrite = 1024 * 1024;
/** ...but never longer than this: clients tail the file, and a slow upstream must not hold their bytes. */
const maxHold = 5;

interface Slot {
  buf: Buffer;
  /** Bytes copied in. */
  filled: number;
  /** Bytes written to the file. */
  flushed: number;
  /** File offset of buf[0]. */
  base: number;
}

/**
 * Writes a stream of views to a file through a few reused buffers, one write at a time and in
 * order, so that the bytes on disk always form a prefix that readers may tail. Copying into reused
 * buffers instead of keeping every chunk alive spares the garbage collector at a GiB per pull.
 */
export class StagingWriter {
  private readonly free: Buffer[] = [];
  private readonly queue: Slot[] = [];
  private position = 0;
  private writing = false;
  private holdTimer: NodeJS.Timeout | undefined;
  private ending = false;
  private failure: Error | undefined;
  private onRoom: (() => void) | undefined;
  private drained: { resolve: () => void; reject: (err: Error) => void } | undefined;
  private readonly bufferSize: number;
  private readonly buffers: number;

  constructor(
    private readonly file: FileHandle,
    /** Called after each write with the bytes it added to the file. */
    private readonly onWritten: (n: number) => void,
    /** Called once when a write fails; nothing more is written after it. */
    private readonly onError: (err: Error) => void,
    opts: { bufferSize?: number; buffers?: number } = {},
  ) {
    this.bufferSize = opts.bufferSize ?? defaultBufferSize;
    this.buffers = opts.buffers ?? defaultBuffers;
  }

  /**
   * Copies `view` in. Returns false when less than `reserve` bytes (at most the whole capacity) of
   * room are left: the producer should pause until `whenRoom` calls back. A view that comes anyway
   * is still taken.
   */
  write(view: Buffer, reserve: number): boolean {
    let v = view;
    while (v.length > 0) {
      let slot = this.queue[this.queue.length - 1];
      if (!slot || slot.filled === slot.buf.length) {
        slot = {
          buf: this.free.pop() ?? Buffer.allocUnsafe(this.bufferSize),
          filled: 0,
          flushed: 0,
          base: this.position,
        };
        this.queue.push(slot);
      }
      const n = v.copy(slot.buf, slot.filled);
      slot.filled += n;
      this.position += n;
      v = v.subarray(n);
    }
    this.kick();
    return this.room() >= this.clamp(reserve);
  }

  /** Calls `cb` once the buffers have room for `reserve` bytes again. */
  whenRoom(wanted: number, cb: () => void): void {
    const reserve = this.clamp(wanted);
    if (this.room() >= reserve || this.failure) {
      cb();
      return;
    }
    this.onRoom = () => {
      if (this.room() < reserve && !this.failure) return;
      this.onRoom = undefined;
      cb();
    };
  }

  /** Writes whatever is left; resolves when every byte copied in is in the file. */
  finish(): Promise<void> {
    this.ending = true;
    return new Promise((resolve, reject) => {
      this.drained = { resolve, reject };
      this.kick();
      this.settleIfDrained();
    });
  }

  /** Resolves once no write is in flight (after a failure elsewhere, before the file is closed). */
  async idle(): Promise<void> {
    this.ending = true;
    clearTimeout(this.holdTimer);
    while (this.writing) await new Promise((r) => setTimeout(r, 1));
  }

  /** No more than the whole capacity can ever be free. */
  private clamp(reserve: number): number {
    return Math.min(reserve, this.bufferSize * this.buffers);
  }

  private room(): number {
    const last = this.queue[this.queue.length - 1];
    // A buffer wholly on disk (no write in flight from it) starts over where the file ends.
    if (last && last.flushed === last.filled && last.filled > 0) {
      last.filled = 0;
      last.flushed = 0;
      last.base = this.position;
    }
    const inLast = last ? last.buf.length - last.filled : 0;
    const unused = Math.max(0, this.buffers - this.queue.length) * this.bufferSize;
    return inLast + unused;
  }

  private kick(): void {
    if (this.writing || this.failure) return;
    const head = this.queue[0];
    if (!head || head.flushed === head.filled) return;
    const pending = head.filled - head.flushed;
    const full = head.filled === head.buf.length || this.queue.length > 1;
    if (!full && !this.ending && pending < minWrite) {
      this.holdTimer ??= setTimeout(() => {
        this.holdTimer = undefined;
        this.write0();
      }, maxHold);
      return;
    }
    this.write0();
  }

  private write0(): void {
    clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    if (this.writing || this.failure) return;
    const head = this.queue[0];
    if (!head || head.flushed === head.filled) return;
    const from = head.flushed;
    const length = head.filled - from;
    this.writing = true;
    this.file.write(head.buf, from, length, head.base + from).then(
      ({ bytesWritten }) => {
        this.writing = false;
        head.flushed += bytesWritten;
        if (head.flushed === head.buf.length) {
          this.queue.shift();
          if (this.free.length < this.buffers) this.free.push(head.buf);
        }
        this.onWritten(bytesWritten);
        this.onRoom?.();
        this.kick();
        this.settleIfDrained();
      },
      (err: Error) => {
        this.writing = false;
        this.failure = err;
        this.onError(err);
        this.onRoom?.();
        this.drained?.reject(err);
      },
    );
  }

  private settleIfDrained(): void {
    if (!this.drained || this.writing) return;
    if (this.failure) {
      this.drained.reject(this.failure);
      return;
    }
    if (this.queue.every((s) => s.flushed === s.filled)) this.drained.resolve();
  }
}
