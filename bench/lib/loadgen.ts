/**
 * External load generators written in C, so the client is not what limits a fast server: wrk for
 * small GETs (requests/s, latency percentiles from its HdrHistogram), ApacheBench for HEAD (wrk 4.1
 * waits for a body after a HEAD answer and stalls), and curl for blob GETs: wrk reads 8 KiB at a time
 * and tops out near 1 GB/s on a large body (measured here: 1.07 GB/s from nginx where curl reads the
 * same file at 1.56 GB/s with a tenth of a second of user CPU for 3 GB).
 */
import { execFile, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { percentile } from "./util.ts";

const run = promisify(execFile);

export interface LoadResult {
  requests: number;
  seconds: number;
  /** Response bytes read, headers included (wrk counts partial bodies of requests cut by the deadline). */
  bytes: number;
  rps: number;
  /** 10^6 bytes per second. */
  mbps: number;
  p50Ms: number;
  p99Ms: number;
  /** Non-2xx answers plus socket errors. */
  errors: number;
  errorDetail: string;
}

const wrkScript = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"bytes\\":%d,\\"connect\\":%d,\\"read\\":%d,\\"write\\":%d,\\"status\\":%d,\\"timeout\\":%d,\\"p50_us\\":%d,\\"p99_us\\":%d}\\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`;

let scriptPath: string | undefined;

async function script(workDir: string): Promise<string> {
  if (!scriptPath) {
    scriptPath = join(workDir, "report.lua");
    await writeFile(scriptPath, wrkScript);
  }
  return scriptPath;
}

export interface WrkOptions {
  url: string;
  connections: number;
  seconds: number;
  headers?: Record<string, string>;
  workDir: string;
  timeoutSeconds?: number;
}

export async function wrk(opts: WrkOptions): Promise<LoadResult> {
  const args = [
    "-t1",
    `-c${opts.connections}`,
    `-d${Math.max(1, Math.round(opts.seconds))}s`,
    `--timeout`,
    `${opts.timeoutSeconds ?? 120}s`,
    "-s",
    await script(opts.workDir),
  ];
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push("-H", `${k}: ${v}`);
  args.push(opts.url);
  const { stdout } = await run("wrk", args, { maxBuffer: 1 << 20 });
  const line = stdout.split("\n").find((l) => l.startsWith("WRKJSON "));
  if (!line) throw new Error(`wrk printed no result:\n${stdout}`);
  const r = JSON.parse(line.slice(8)) as Record<string, number>;
  const seconds = r.duration_us! / 1e6;
  const socketErrors = r.connect! + r.write! + r.timeout!;
  return {
    requests: r.requests!,
    seconds,
    bytes: r.bytes!,
    rps: r.requests! / seconds,
    mbps: r.bytes! / seconds / 1e6,
    p50Ms: r.p50_us! / 1000,
    p99Ms: r.p99_us! / 1000,
    errors: r.status! + socketErrors,
    errorDetail:
      r.status! + socketErrors + r.read! > 0
        ? `non-2xx ${r.status}, connect ${r.connect}, read ${r.read}, write ${r.write}, timeout ${r.timeout}`
        : "",
  };
}

export interface AbOptions {
  url: string;
  connections: number;
  seconds: number;
  method: "HEAD" | "GET";
  headers?: Record<string, string>;
}

/** ApacheBench with keep-alive; `-t` bounds the time, a huge `-n` never stops it first. */
export async function ab(opts: AbOptions): Promise<LoadResult> {
  const args = [
    "-k",
    "-q",
    "-c",
    String(opts.connections),
    "-t",
    String(Math.max(1, Math.round(opts.seconds))),
  ];
  args.push("-n", "50000000", "-s", "60");
  if (opts.method === "HEAD") args.push("-i");
  for (const [k, v] of Object.entries(opts.headers ?? {})) args.push("-H", `${k}: ${v}`);
  args.push(opts.url);
  const { stdout } = await run("ab", args, { maxBuffer: 1 << 20 });
  const num = (re: RegExp): number => {
    const m = re.exec(stdout);
    return m ? Number(m[1]) : 0;
  };
  const requests = num(/^Complete requests:\s+(\d+)/m);
  const seconds = num(/^Time taken for tests:\s+([\d.]+) seconds/m);
  const failed = num(/^Failed requests:\s+(\d+)/m);
  const non2xx = num(/^Non-2xx responses:\s+(\d+)/m);
  const bytes = num(/^Total transferred:\s+(\d+) bytes/m);
  if (!requests || !seconds) throw new Error(`ab printed no result:\n${stdout}`);
  return {
    requests,
    seconds,
    bytes,
    rps: num(/^Requests per second:\s+([\d.]+)/m),
    mbps: bytes / seconds / 1e6,
    p50Ms: num(/^\s+50%\s+(\d+)/m),
    p99Ms: num(/^\s+99%\s+(\d+)/m),
    errors: failed + non2xx,
    errorDetail: failed + non2xx > 0 ? `failed ${failed}, non-2xx ${non2xx}` : "",
  };
}

export interface CurlOptions {
  url: string;
  connections: number;
  /** How many GETs in all, spread over the connections. */
  requests: number;
  workDir: string;
}

/**
 * `requests` GETs of one URL over `connections` kept-alive connections (curl --parallel), bodies to
 * /dev/null; the clock runs from start to the last byte of the last transfer.
 */
export async function curlGet(opts: CurlOptions): Promise<LoadResult> {
  const config = join(opts.workDir, `curl-${process.pid}-${Date.now()}.txt`);
  const entry = `url = "${opts.url}"\noutput = "/dev/null"\n`;
  await writeFile(config, entry.repeat(opts.requests));
  const args = ["--silent", "--show-error", "--no-progress-meter", "--parallel", "--parallel-immediate"];
  args.push("--parallel-max", String(opts.connections), "--config", config);
  args.push("--write-out", "%{http_code} %{size_download} %{time_total}\\n");
  const started = performance.now();
  const { stdout, stderr, code } = await new Promise<{ stdout: string; stderr: string; code: number | null }>(
    (resolve, reject) => {
      const p = spawn("curl", args, { stdio: ["ignore", "pipe", "pipe"] });
      let out = "";
      let err = "";
      p.stdout.on("data", (d: Buffer) => {
        out += d.toString();
      });
      p.stderr.on("data", (d: Buffer) => {
        err += d.toString();
      });
      p.on("error", reject);
      p.on("exit", (c) => resolve({ stdout: out, stderr: err, code: c }));
    },
  );
  const seconds = (performance.now() - started) / 1000;
  const lines = stdout.trim().split("\n").filter(Boolean);
  let bytes = 0;
  let bad = 0;
  const times: number[] = [];
  for (const line of lines) {
    const [status, size, total] = line.split(" ");
    if (!status?.startsWith("2")) bad++;
    bytes += Number(size);
    times.push(Number(total) * 1000);
  }
  const missing = opts.requests - lines.length;
  const errors = bad + Math.max(0, missing);
  return {
    requests: lines.length,
    seconds,
    bytes,
    rps: lines.length / seconds,
    mbps: bytes / seconds / 1e6,
    p50Ms: percentile(times, 50),
    p99Ms: percentile(times, 99),
    errors,
    errorDetail: errors
      ? `non-2xx ${bad}, not done ${missing}, curl exit ${code}: ${stderr.slice(0, 200)}`
      : "",
  };
}
