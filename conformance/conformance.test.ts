/**
 * OCI distribution-spec v1.1 conformance suite, configured only by environment (see README.md).
 * The four workflows run in the official suite's order, sequentially, against one registry:
 * later checks within a workflow depend on earlier ones.
 */
import { describe, test } from "vitest";
import { checkWarningValues } from "./lib/checks.ts";
import { client } from "./lib/client.ts";
import { env, parseBool } from "./lib/env.ts";
import { discoveryWorkflow } from "./workflows/discovery.ts";
import { managementWorkflow } from "./workflows/management.ts";
import { pullWorkflow } from "./workflows/pull.ts";
import { pushWorkflow } from "./workflows/push.ts";

if (!env.rootUrl) {
  throw new Error(
    "OCI_ROOT_URL is not set: point it at the registry under test (e.g. http://127.0.0.1:5000)",
  );
}

const hideSkipped = parseBool(process.env.OCI_HIDE_SKIPPED_WORKFLOWS);
const anyWorkflow = env.pull || env.push || env.contentDiscovery || env.contentManagement;

if (env.pull || !hideSkipped) pullWorkflow();
if (env.push || !hideSkipped) pushWorkflow();
if (env.contentDiscovery || !hideSkipped) discoveryWorkflow();
if (env.contentManagement || !hideSkipped) managementWorkflow();

describe.skipIf(!anyWorkflow)("Every response", () => {
  test("Warning headers should use warn-code 299, warn-agent - and no warn-date, at most 4096 bytes", () => {
    for (const w of client.warnings) checkWarningValues(w.request, w.values);
  });
});
