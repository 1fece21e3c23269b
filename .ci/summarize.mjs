// Sums vitest's JSON results across every workspace package that has a test script and prints
// exactly one line: "N passed, N failed, N skipped". A package whose run left no results counts
// as one failure, so a crash can never look green.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const dirs = [
  ...readdirSync(join(root, 'packages')).map((name) => join(root, 'packages', name)),
  join(root, 'benchmarks'),
  join(root, 'docs-test'),
  join(root, 'reliability'),
];

let passed = 0;
let failed = 0;
let skipped = 0;
for (const dir of dirs) {
  const manifest = join(dir, 'package.json');
  if (!existsSync(manifest)) continue;
  if (!JSON.parse(readFileSync(manifest, 'utf8')).scripts?.test) continue;
  const results = join(dir, '.tmp', 'vitest.json');
  if (!existsSync(results)) {
    console.log(`no test results from ${dir}`);
    failed += 1;
    continue;
  }
  const report = JSON.parse(readFileSync(results, 'utf8'));
  passed += report.numPassedTests;
  failed += report.numFailedTests;
  skipped += report.numPendingTests + report.numTodoTests;
  // A file that failed to load has no tests but is still a failure.
  let unexplained = 0;
  for (const file of report.testResults ?? []) {
    if (file.status === 'failed' && (file.assertionResults ?? []).length === 0) unexplained += 1;
    // Name each failure near the end of the log, where a truncated log still shows it.
    for (const test of file.assertionResults ?? []) {
      if (test.status !== 'failed') continue;
      const message = String(test.failureMessages?.[0] ?? '')
        .split('\n')
        .slice(0, 3)
        .join(' | ');
      console.log(
        `FAILED ${file.name.slice(root.length)} > ${test.fullName}: ${message.slice(0, 400)}`,
      );
    }
  }
  // A run that failed without a failing test (no test files, a crash) still counts once.
  if (report.success === false && report.numFailedTests === 0 && unexplained === 0) unexplained = 1;
  if (unexplained > 0)
    console.log(`${dir}: ${unexplained} test file(s) failed without a test result`);
  failed += unexplained;
}
console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exitCode = failed > 0 ? 1 : 0;
