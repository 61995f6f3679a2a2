// Sends every console method to stderr: stdout carries only the protocol's answer lines.
import { format } from "node:util";

for (const m of ["log", "info", "debug", "trace", "warn", "error"]) {
  console[m] = (...a) => process.stderr.write(format(...a) + "\n");
}
