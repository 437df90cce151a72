/**
 * Runs `kagami copy` with the given arguments in a process of its own and prints its exit status
 * and peak resident memory as JSON: what the copy memory test measures.
 */
import { copyCommand } from "../../src/cli/copy.ts";

const code = await copyCommand(process.argv.slice(2));
process.stdout.write(`${JSON.stringify({ code, maxRssMiB: process.resourceUsage().maxRSS / 1024 })}\n`);
