/**
 * Kagami's benchmark harness: starts Kagami, CNCF distribution and nginx on free loopback ports with
 * fresh storage, runs zb-style workloads against each in alternation, repeats, and writes the raw
 * numbers (JSON) and a results table (Markdown).
 *
 *   npm run bench                 full run (~15 minutes on 2 cores): docs/benchmarks.md, docs/benchmarks.json
 *   npm run bench:smoke           every workload at toy sizes in seconds: bench/results/smoke/
 *
 * Options (after `--` with npm):
 *   --out DIR        write benchmarks.md and benchmarks.json into DIR instead
 *   --only REGEX     run only the workloads whose id matches (results go to bench/results/)
 *   --reps N         repetitions per workload (full run: 3)
 *   --kagami DIR     benchmark the Kagami checkout in DIR (its dist/) instead of this one
 *   --no-build       do not run `npm run build` in the Kagami checkout first
 *   --cpu-prof DIR   run Kagami under `node --cpu-prof`, profiles written into DIR
 *   --render FILE    write the Markdown table again from a results JSON file, running nothing
 */
import { execFile, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { type Context, fullPlan, type Plan, smokePlan } from "./lib/context.ts";
import { renderMarkdown, rows } from "./lib/report.ts";
import type { RunResults } from "./lib/results.ts";
import { hasCommand, startDistribution, startKagami, startNginx, stopAll, versionOf } from "./lib/servers.ts";
import { errorMessage, log } from "./lib/util.ts";
import { mirrorWorkloads } from "./workloads/mirror.ts";
import {
  blobGetWorkloads,
  kagamiLaunch,
  listingWorkloads,
  manifestWorkloads,
  mixedPullWorkload,
} from "./workloads/pull.ts";
import { mixedPushPullWorkloads, pushWorkloads } from "./workloads/push.ts";

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const { values: args } = parseArgs({
  options: {
    smoke: { type: "boolean", default: false },
    out: { type: "string" },
    only: { type: "string" },
    reps: { type: "string" },
    kagami: { type: "string" },
    "no-build": { type: "boolean", default: false },
    "cpu-prof": { type: "string" },
    render: { type: "string" },
  },
});

async function build(root: string): Promise<void> {
  log(`building ${root} (npm run build)`);
  await new Promise<void>((res, rej) => {
    const p = spawn("npm", ["run", "build", "--silent"], {
      cwd: root,
      stdio: ["ignore", "inherit", "inherit"],
    });
    p.on("exit", (code) => (code === 0 ? res() : rej(new Error(`npm run build exited with ${code}`))));
    p.on("error", rej);
  });
}

async function gitDescription(root: string): Promise<string> {
  try {
    const { stdout: sha } = await run("git", ["rev-parse", "--short", "HEAD"], { cwd: root });
    const { stdout: dirty } = await run("git", ["status", "--porcelain", "--untracked-files=no", "src"], {
      cwd: root,
    });
    return `${sha.trim()}${dirty.trim() ? " with uncommitted changes in src/" : ""}`;
  } catch {
    return "unknown commit";
  }
}

async function machine(workDir: string): Promise<Record<string, string | number>> {
  let filesystem = "unknown";
  try {
    const { stdout } = await run("df", ["-T", workDir]);
    filesystem = stdout.trim().split("\n")[1]?.split(/\s+/)[1] ?? filesystem;
  } catch {
    /* df missing: leave unknown */
  }
  return {
    cpus: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model.trim() ?? "unknown",
    memoryGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    kernel: os.release(),
    arch: os.arch(),
    filesystem,
  };
}

async function versions(kagamiRoot: string): Promise<Record<string, string>> {
  const pkg = JSON.parse(readFileSync(join(kagamiRoot, "package.json"), "utf8")) as { version: string };
  return {
    kagami: `${pkg.version} (${await gitDescription(kagamiRoot)})`,
    node: process.version,
    distribution: (await versionOf("docker-registry", ["--version"])) ?? "distribution not installed",
    nginx: (await versionOf("nginx", ["-v"])) ?? "nginx not installed",
    wrk: ((await versionOf("wrk", ["-v"])) ?? "wrk not installed").replace(/ Copyright.*/, ""),
    ab: ((await versionOf("ab", ["-V"])) ?? "ab not installed")
      .replace(/^This is /, "")
      .replace(" <$Revision$>", ""),
  };
}

function planFor(): Plan {
  const plan = args.smoke ? smokePlan() : fullPlan(3);
  if (args.reps) plan.reps = Math.max(1, Number(args.reps));
  return plan;
}

function serializablePlan(plan: Plan): Record<string, unknown> {
  return {
    ...plan,
    blobGet: {
      ...plan.blobGet,
      requests: plan.blobGet.sizes.map((s) =>
        Object.fromEntries(plan.blobGet.connections.map((c) => [`c${c}`, plan.blobGet.requests(s, c)])),
      ),
    },
  };
}

/** Re-renders the Markdown of an earlier run (docs/benchmarks.md for a full run, or --out). */
async function render(file: string): Promise<number> {
  const results = JSON.parse(readFileSync(file, "utf8")) as RunResults;
  const mdPath = args.out
    ? join(resolve(args.out), "benchmarks.md")
    : results.mode === "full"
      ? join(repoRoot, "docs/benchmarks.md")
      : join(repoRoot, "bench/results/smoke/benchmarks.md");
  await mkdir(dirname(mdPath), { recursive: true });
  await writeFile(mdPath, renderMarkdown(mdPath, results));
  process.stdout.write(`${mdPath}\n`);
  return 0;
}

async function main(): Promise<number> {
  if (args.render) return render(resolve(args.render));
  const plan = planFor();
  const kagamiRoot = resolve(args.kagami ?? repoRoot);
  if (!args["no-build"]) await build(kagamiRoot);
  if (!existsSync(join(kagamiRoot, "dist/cli/main.js"))) {
    throw new Error(`${kagamiRoot}/dist/cli/main.js is missing: run npm run build there`);
  }
  const tools = {
    curl: await hasCommand("curl"),
    wrk: await hasCommand("wrk"),
    ab: await hasCommand("ab"),
    nginx: await hasCommand("nginx"),
    distribution: await hasCommand("docker-registry"),
  };
  for (const [name, ok] of Object.entries(tools))
    if (!ok) log(`${name} is not installed: its workloads are skipped`);

  const workDir = await mkdtemp(join(os.tmpdir(), "kagami-bench-"));
  const cleanup = async () => {
    await stopAll();
    await rm(workDir, { recursive: true, force: true }).catch(() => {});
  };
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.once(sig, () => {
      log(`${sig}: stopping the servers`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  const started = new Date();
  const ctx: Context = {
    plan,
    kagamiRoot,
    workDir,
    tools,
    results: [],
    sources: new Map(),
    pull: {},
    seeds: new Map(),
  };
  if (args.only) ctx.only = new RegExp(args.only);
  if (args["cpu-prof"]) {
    ctx.cpuProfDir = resolve(args["cpu-prof"]);
    await mkdir(ctx.cpuProfDir, { recursive: true });
  }
  log(`${plan.mode} run, ${plan.reps} repetition(s), work directory ${workDir}`);
  try {
    ctx.pull.kagami = await startKagami(kagamiLaunch(ctx, "pull"));
    if (tools.distribution)
      ctx.pull.distribution = await startDistribution({ workDir, label: "distribution (pull)" });
    if (tools.nginx) ctx.pull.nginx = await startNginx({ workDir, root: ctx.pull.kagami.dataDir });

    await manifestWorkloads(ctx);
    await blobGetWorkloads(ctx);
    await mixedPullWorkload(ctx);
    await mirrorWorkloads(ctx);
    for (const s of Object.values(ctx.pull)) await s.stop();
    ctx.pull = {};
    await listingWorkloads(ctx);
    await pushWorkloads(ctx);
    await mixedPushPullWorkloads(ctx);

    const finished = new Date();
    const results: RunResults = {
      schema: 1,
      mode: plan.mode,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      durationSeconds: (finished.getTime() - started.getTime()) / 1000,
      machine: await machine(os.tmpdir()),
      versions: await versions(kagamiRoot),
      plan: serializablePlan(plan),
      workloads: ctx.results,
    };
    await write(results, kagamiRoot);
    const failed = ctx.results.filter((w) => w.status === "failed");
    for (const w of failed) log(`FAILED ${w.id}: ${w.note}`);
    return failed.length ? 1 : 0;
  } finally {
    await cleanup();
  }
}

async function write(results: RunResults, kagamiRoot: string): Promise<void> {
  const stamp = results.startedAt.replace(/[:.]/g, "-");
  const json = `${JSON.stringify({ ...results, summary: rows(results) }, null, 2)}\n`;
  const official = results.mode === "full" && !args.only && !args.out && kagamiRoot === repoRoot;
  let mdPath: string;
  let jsonPaths: string[];
  if (args.out) {
    const out = resolve(args.out);
    mdPath = join(out, "benchmarks.md");
    jsonPaths = [join(out, "benchmarks.json")];
  } else if (official) {
    mdPath = join(repoRoot, "docs/benchmarks.md");
    jsonPaths = [join(repoRoot, "bench/results", `${stamp}.json`), join(repoRoot, "docs/benchmarks.json")];
  } else {
    const name = results.mode === "smoke" ? "smoke" : `partial-${stamp}`;
    mdPath = join(repoRoot, "bench/results", name, "benchmarks.md");
    jsonPaths = [join(repoRoot, "bench/results", name, "benchmarks.json")];
  }
  for (const p of [mdPath, ...jsonPaths]) await mkdir(dirname(p), { recursive: true });
  for (const p of jsonPaths) await writeFile(p, json);
  await writeFile(mdPath, renderMarkdown(mdPath, results));
  log(`wrote ${[mdPath, ...jsonPaths].join(", ")}`);
  process.stdout.write(`${mdPath}\n`);
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    log(`error: ${errorMessage(err)}`);
    await stopAll();
    process.exitCode = 1;
  },
);
