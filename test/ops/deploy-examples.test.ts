/**
 * The Kubernetes and systemd examples hold together: every YAML document parses, the probes use
 * zot's health paths on the container's port, the ConfigMap's configuration passes `kagami verify`
 * with the files it names where the Deployment mounts them, and the systemd unit runs the commands
 * Kagami has.
 */
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseAllDocuments } from "yaml";
import { run } from "../clients/common.ts";
import { kagamiBin, repoRoot } from "../helpers/kagami.ts";
import { hasTool } from "../helpers/tools.ts";

type Doc = {
  kind: string;
  metadata: { name: string };
  data?: Record<string, string>;
  stringData?: Record<string, string>;
  spec?: Record<string, unknown>;
};
interface Container {
  args: string[];
  ports: { name: string; containerPort: number }[];
  volumeMounts: { name: string; mountPath: string }[];
  startupProbe: { httpGet: { path: string; port: string } };
  livenessProbe: { httpGet: { path: string; port: string } };
  readinessProbe: { httpGet: { path: string; port: string } };
}
interface PodSpec {
  containers: Container[];
  volumes: {
    name: string;
    configMap?: { name: string };
    secret?: { secretName: string };
    persistentVolumeClaim?: { claimName: string };
  }[];
}

const k8sDir = join(repoRoot, "examples/kubernetes");
const docs: Doc[] = readdirSync(k8sDir)
  .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
  .flatMap((f) =>
    parseAllDocuments(readFileSync(join(k8sDir, f), "utf8")).map((d) => {
      if (d.errors.length > 0) throw new Error(`${f}: ${d.errors.map((e) => e.message).join("; ")}`);
      return d.toJS() as Doc;
    }),
  );
const byKind = (kind: string, name?: string) => {
  const found = docs.find((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
  if (!found) throw new Error(`no ${kind} ${name ?? ""} in examples/kubernetes`);
  return found;
};
const pod = (byKind("Deployment").spec!.template as { spec: PodSpec }).spec;
const container = pod.containers[0]!;
const scratch = mkdtempSync(join(tmpdir(), "kagami-k8s-"));

function verify(configPath: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [kagamiBin, "verify", "--config", configPath], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

describe("Kubernetes example", () => {
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  it("lists every manifest in its kustomization", () => {
    const k = parseAllDocuments(readFileSync(join(k8sDir, "kustomization.yaml"), "utf8"))[0]!.toJS() as {
      resources: string[];
    };
    expect(k.resources.sort()).toEqual(
      readdirSync(k8sDir)
        .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
        .sort(),
    );
  });

  it("probes /startupz, /livez and /readyz on the port the configuration listens on", () => {
    const config = JSON.parse(byKind("ConfigMap").data!["config.json"]!);
    const port = container.ports.find((p) => p.name === "http")!;
    expect(String(port.containerPort)).toBe(config.http.port);
    expect(container.startupProbe.httpGet).toEqual({ path: "/startupz", port: "http" });
    expect(container.livenessProbe.httpGet).toEqual({ path: "/livez", port: "http" });
    expect(container.readinessProbe.httpGet).toEqual({ path: "/readyz", port: "http" });
    const service = byKind("Service").spec as { ports: { targetPort: string }[] };
    expect(service.ports[0]!.targetPort).toBe("http");
  });

  it("has a configuration that kagami verify accepts, with the files where the Deployment mounts them", async () => {
    // What the kubelet does: each volume's content at its mount path, here under a scratch directory.
    const at = (mountPath: string) => join(scratch, mountPath);
    for (const m of container.volumeMounts) {
      const v = pod.volumes.find((x) => x.name === m.name)!;
      mkdirSync(at(m.mountPath), { recursive: true });
      const files = v.configMap
        ? byKind("ConfigMap", v.configMap.name).data
        : v.secret
          ? byKind("Secret", v.secret.secretName).stringData
          : undefined;
      if (v.persistentVolumeClaim) byKind("PersistentVolumeClaim", v.persistentVolumeClaim.claimName);
      for (const [name, content] of Object.entries(files ?? {}))
        writeFileSync(join(at(m.mountPath), name), content);
    }
    const configArg = container.args[container.args.indexOf("--config") + 1]!;
    const config = JSON.parse(readFileSync(at(configArg), "utf8"));
    // The paths the configuration names must lie on a mount, the data directory on the volume claim.
    const mountOf = (path: string) =>
      container.volumeMounts.find((m) => path.startsWith(`${m.mountPath}/`) || path === m.mountPath);
    expect(
      pod.volumes.find((v) => v.name === mountOf(config.storage.rootDirectory)?.name)?.persistentVolumeClaim,
    ).toBeDefined();
    expect(mountOf(config.http.auth.htpasswd.path)).toBeDefined();
    config.storage.rootDirectory = at(config.storage.rootDirectory);
    config.http.auth.htpasswd.path = at(config.http.auth.htpasswd.path);
    const rewritten = join(scratch, "verify-config.json");
    writeFileSync(rewritten, JSON.stringify(config));
    const r = await verify(rewritten);
    expect(r.out).toContain("configuration is valid");
    expect(r.out).not.toContain("warning");
    expect(r.code).toBe(0);
  });
});

describe("systemd example", () => {
  const unit = readFileSync(join(repoRoot, "examples/systemd/kagami.service"), "utf8");
  const directives = unit
    .split("\n")
    .filter((l) => /^[A-Za-z]+=/.test(l))
    .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)] as const);
  const get = (key: string) => directives.filter(([k]) => k === key).map(([, v]) => v);

  it("verifies the configuration before serving it, as an unprivileged user with its own state directory", () => {
    expect(get("ExecStartPre")).toEqual(["/usr/bin/env kagami verify --config /etc/kagami/config.json"]);
    expect(get("ExecStart")).toEqual(["/usr/bin/env kagami serve --config /etc/kagami/config.json"]);
    expect(get("User")).toEqual(["kagami"]);
    expect(get("StateDirectory")).toEqual(["kagami"]);
    expect(get("ProtectSystem")).toEqual(["strict"]);
    expect(get("NoNewPrivileges")).toEqual(["yes"]);
    expect(get("KillSignal")).toEqual(["SIGTERM"]);
  });

  it.runIf(hasTool("systemd-analyze"))(
    "passes systemd-analyze verify, with a low exposure score",
    async () => {
      const unitPath = join(repoRoot, "examples/systemd/kagami.service");
      await run("systemd-analyze", ["verify", unitPath]);
      // --threshold makes the command fail above this exposure, in tenths of the printed score (1.3 when written).
      await run("systemd-analyze", ["security", "--offline=yes", "--threshold=20", unitPath]);
    },
  );
});
