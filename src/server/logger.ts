import pino, { type Logger } from "pino";
import type { KagamiConfig } from "../config/config.ts";

export function createLogger(log: KagamiConfig["log"]): Logger {
  const destination = log.output
    ? pino.destination({ dest: log.output, mkdir: true, sync: false })
    : pino.destination(1);
  return pino(
    {
      level: log.level,
      base: { service: "kagami" },
      timestamp: pino.stdTimeFunctions.isoTime,
      // "error", not 50: log pipelines and people filter on names (zot logs names too).
      formatters: { level: (label) => ({ level: label }) },
      // Credentials must never reach a log line, whatever a caller passes along.
      redact: {
        paths: [
          "authorization",
          "password",
          "*.authorization",
          "*.password",
          "headers.authorization",
          "headers.cookie",
        ],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
