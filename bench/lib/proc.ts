/**
 * Resource use of a server process, read from /proc: resident memory (VmRSS sampled every few ms, and
 * VmHWM reset through clear_refs where the kernel lets us) and CPU time (utime + stime).
 */
import { readFileSync, writeFileSync } from "node:fs";

const clockTicks = 100; // USER_HZ on Linux

function statusKiB(pid: number, field: "VmRSS" | "VmHWM"): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, "utf8");
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) the process has used so far, its threads included. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return (Number(rest[11]) + Number(rest[12])) / clockTicks;
  } catch {
    return undefined;
  }
}

export interface ProcUsage {
  /** Highest resident set seen during the window, MiB. */
  peakRssMiB: number;
  /** CPU seconds used during the window. */
  cpuSeconds: number;
}

/** User and system CPU seconds of a process so far (system time includes faulting in page cache it writes). */
export function cpuSplit(pid: number): { user: number; sys: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, "utf8");
    const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
    return { user: Number(rest[11]) / clockTicks, sys: Number(rest[12]) / clockTicks };
  } catch {
    return undefined;
  }
}

/** Watches one process for the length of a measurement. */
export class ProcSampler {
  private peakKiB = 0;
  private timer: NodeJS.Timeout | undefined;
  private cpuStart = 0;
  private hwmReset = false;

  constructor(
    readonly pid: number,
    private readonly intervalMs = 10,
  ) {}

  start(): this {
    // "5" resets the peak resident set (VmHWM) to the current RSS (Linux >= 4.0); needs ownership or root.
    try {
      writeFileSync(`/proc/${this.pid}/clear_refs`, "5");
      this.hwmReset = true;
    } catch {
      this.hwmReset = false;
    }
    this.cpuStart = cpuSeconds(this.pid) ?? 0;
    this.sample();
    this.timer = setInterval(() => this.sample(), this.intervalMs);
    this.timer.unref();
    return this;
  }

  private sample(): void {
    const kib = statusKiB(this.pid, "VmRSS");
    if (kib !== undefined && kib > this.peakKiB) this.peakKiB = kib;
  }

  stop(): ProcUsage {
    if (this.timer) clearInterval(this.timer);
    this.sample();
    if (this.hwmReset) {
      const hwm = statusKiB(this.pid, "VmHWM");
      if (hwm !== undefined && hwm > this.peakKiB) this.peakKiB = hwm;
    }
    return {
      peakRssMiB: this.peakKiB / 1024,
      cpuSeconds: Math.max(0, (cpuSeconds(this.pid) ?? this.cpuStart) - this.cpuStart),
    };
  }
}

/** Samples several processes at once (a registry and, for mirrors, its upstream). */
export function sampleAll(pids: Record<string, number | undefined>): () => Record<string, ProcUsage> {
  const samplers = Object.entries(pids)
    .filter((e): e is [string, number] => e[1] !== undefined)
    .map(([name, pid]) => [name, new ProcSampler(pid).start()] as const);
  return () => Object.fromEntries(samplers.map(([name, s]) => [name, s.stop()]));
}
