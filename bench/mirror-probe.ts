/**
 * A focused probe of the mirror's first pull, for working on it (the full run's
 * `mirror.first-pull.1GiB` answers "how do we compare", this answers "where does it go"):
 * one blob in a distribution upstream, fetched with curl through fresh mirrors in alternation,
 * with the pull time and the CPU seconds of the mirror and of the upstream for every run.
 *
 *   npx tsx bench/mirror-probe.ts [--size-mib 1024] [--reps 3]
 *       [--kagami DIR[::NODE_FLAGS]]...    Kagami checkouts to compare (default: this one)
 *       [--no-distribution]                 leave distribution's pull-through cache out
 *       [--prewarm-mib N]                   write and delete N MiB before each run (see below)
 *
 * e.g. `--kagami . --kagami .::--initial-old-space-size=128` compares a V8 flag. Each Kagami
 * checkout must be built (`npm run build`). Needs docker-registry and curl.
 *
 * `--prewarm-mib` writes and deletes a file before each run (lib/pagecache.ts says why); system CPU
 * per run is printed beside user CPU, where the cost of cold page cache shows.
 */
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { BlobSource } from "./lib/blobs.ts";
import { Client } from "./lib/http.ts";
import { pushBlobMonolithic } from "./lib/ops.ts";
import { warmFreePages } from "./lib/pagecache.ts";
import { cpuSeconds, cpuSplit } from "./lib/proc.ts";
import { mirrorExtension, type Server, startDistribution, startKagami, stopAll } from "./lib/servers.ts";
import { log, MiB, median } from "./lib/util.ts";

const { values: args } = parseArgs({
  options: {
    "size-mib": { type: "string", default: "1024" },
    reps: { type: "string", default: "3" },
    kagami: { type: "string", multiple: true },
    "no-distribution": { type: "boolean", default: false },
    "prewarm-mib": { type: "string", default: "0" },
  },
});

interface Variant {
  label: string;
  start(workDir: string, upstream: string): Promise<Server>;
}

function kagamiVariant(spec: string): Variant {
  const [dir = ".", flags = ""] = spec.split("::");
  const root = resolve(dir);
  const nodeArgs = flags.split(/\s+/).filter(Boolean);
  return {
    label: `kagami ${basename(root)}${flags ? ` ${flags}` : ""}`,
    start: (workDir, upstream) =>
      startKagami({
        root,
        workDir,
        label: "kagami (mirror)",
        extraConfig: mirrorExtension(upstream),
        nodeArgs,
      }),
  };
}

async function curlTime(url: string): Promise<number> {
  const started = performance.now();
  const code = await new Promise<number | null>((res, rej) => {
    const p = spawn("curl", ["-sf", "-o", "/dev/null", url], { stdio: "ignore" });
    p.on("exit", res);
    p.on("error", rej);
  });
  if (code !== 0) throw new Error(`curl ${url} exited with ${code}`);
  return performance.now() - started;
}

async function main(): Promise<void> {
  const size = Number(args["size-mib"]) * MiB;
  const reps = Number(args.reps);
  const variants: Variant[] = (args.kagami?.length ? args.kagami : ["."]).map(kagamiVariant);
  if (!args["no-distribution"]) {
    variants.push({
      label: "distribution",
      start: (workDir, upstream) =>
        startDistribution({ workDir, label: "distribution (mirror)", proxyRemoteUrl: upstream }),
    });
  }
  const workDir = await mkdtemp(join(os.tmpdir(), "kagami-mirror-probe-"));
  try {
    const upstream = await startDistribution({ workDir, label: "distribution (upstream)" });
    const blob = (await BlobSource.create(workDir, size)).variant("probe");
    await pushBlobMonolithic(new Client(upstream.url), "probe/big", blob);
    const path = `/v2/probe/big/blobs/${blob.digest}`;
    log(
      `direct from upstream: ${(await curlTime(upstream.url + path)).toFixed(0)} ms (warms its page cache)`,
    );
    const rows = new Map(variants.map((v) => [v.label, [] as { ms: number; cpu: number; up: number }[]]));
    for (let rep = 0; rep < reps; rep++) {
      for (let i = 0; i < variants.length; i++) {
        const v = variants[(i + rep) % variants.length]!;
        const mirror = await v.start(workDir, upstream.url);
        warmFreePages(workDir, Number(args["prewarm-mib"]) * MiB);
        const split0 = cpuSplit(mirror.pid);
        const cpu0 = cpuSeconds(mirror.pid) ?? 0;
        const up0 = cpuSeconds(upstream.pid) ?? 0;
        const ms = await curlTime(mirror.url + path);
        const sample = {
          ms,
          cpu: (cpuSeconds(mirror.pid) ?? 0) - cpu0,
          up: (cpuSeconds(upstream.pid) ?? 0) - up0,
        };
        rows.get(v.label)!.push(sample);
        const split1 = cpuSplit(mirror.pid);
        const split =
          split0 && split1
            ? ` (user ${(split1.user - split0.user).toFixed(2)}, sys ${(split1.sys - split0.sys).toFixed(2)})`
            : "";
        log(
          `${v.label} #${rep + 1}: ${ms.toFixed(0)} ms, mirror CPU ${sample.cpu.toFixed(2)} s${split}, upstream CPU ${sample.up.toFixed(2)} s`,
        );
        await mirror.stop();
      }
    }
    process.stdout.write(
      `\n| mirror | pull (ms, each run) | median | mirror CPU s (median) | upstream CPU s (median) |\n| --- | --- | --- | --- | --- |\n`,
    );
    for (const [label, samples] of rows) {
      process.stdout.write(
        `| ${label} | ${samples.map((s) => s.ms.toFixed(0)).join(", ")} | ${median(samples.map((s) => s.ms)).toFixed(0)} | ${median(samples.map((s) => s.cpu)).toFixed(2)} | ${median(samples.map((s) => s.up)).toFixed(2)} |\n`,
      );
    }
  } finally {
    await stopAll();
    await rm(workDir, { recursive: true, force: true });
  }
}

await main();
