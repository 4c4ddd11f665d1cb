// Validate glTF/GLB files with the Khronos glTF validator and print one JSON report per file.
// Usage: node tests/js/gltf_validate.mjs a.glb [b.glb ...]  (install first: npm ci --prefix tests/js)
// Output: a JSON array of {path, numErrors, numWarnings, errors: [{code, message, pointer}]}; exit code 0.
import { readFile } from "node:fs/promises";
import validator from "gltf-validator";

const reports = [];
for (const path of process.argv.slice(2)) {
  const bytes = new Uint8Array(await readFile(path));
  const result = await validator.validateBytes(bytes, { maxIssues: 100, format: path.endsWith(".glb") ? "glb" : "gltf" });
  const issues = result.issues;
  reports.push({
    path,
    numErrors: issues.numErrors,
    numWarnings: issues.numWarnings,
    errors: issues.messages.filter((m) => m.severity === 0).map(({ code, message, pointer }) => ({ code, message, pointer })),
    warnings: issues.messages.filter((m) => m.severity === 1).map(({ code, message, pointer }) => ({ code, message, pointer })),
  });
}
process.stdout.write(JSON.stringify(reports));
