/** The generated part of docs/benchmarks.md: its sections in order, and where it goes in the page. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import type { BenchResults } from '../results.js';
import type { Charts } from './charts.js';
import { cleanupSection } from './sections/cleanup.js';
import { contentionSection } from './sections/contention.js';
import { copySection } from './sections/copy.js';
import { environmentSection } from './sections/environment.js';
import { growthSection } from './sections/growth.js';
import { headlineSection } from './sections/headlines.js';
import { httpSection } from './sections/http.js';
import { httpFrameworksSection } from './sections/http-frameworks.js';
import { lockFloodSection } from './sections/lock-flood.js';
import { OPS_WORKLOADS, opsSection } from './sections/ops.js';
import { ownersSection } from './sections/owners.js';
import { targetsSection } from './sections/targets.js';

export const START_MARKER = '<!-- bench:start -->';
export const END_MARKER = '<!-- bench:end -->';

/** The generated part of docs/benchmarks.md, and the charts it links to. */
export function renderReport(
  results: BenchResults,
  chartsLink: string,
): { markdown: string; charts: Map<string, string> } {
  const charts: Charts = { link: chartsLink, files: new Map() };
  const lines = [
    ...environmentSection(results),
    ...headlineSection(results),
    ...targetsSection(results),
    ...OPS_WORKLOADS.flatMap((name) => opsSection(results, name, charts)),
    ...growthSection(results, charts),
    ...contentionSection(results, charts),
    ...lockFloodSection(results),
    ...cleanupSection(results, charts),
    ...httpSection(results, charts),
    ...httpFrameworksSection(results),
    ...ownersSection(results),
    ...copySection(results),
  ];
  return { markdown: lines.join('\n'), charts: charts.files };
}

const DEFAULT_DOC = `# Benchmarks

${START_MARKER}
${END_MARKER}
`;

/** Replaces what lies between the markers in `docPath` (creating the file if needed) and writes the charts. */
export async function writeReport(
  results: BenchResults,
  docPath: string,
  chartsDir: string,
): Promise<void> {
  const link = relative(dirname(docPath), chartsDir).split('\\').join('/') || basename(chartsDir);
  const { markdown, charts } = renderReport(results, link);
  const existing = await readFile(docPath, 'utf8').catch(() => DEFAULT_DOC);
  const start = existing.indexOf(START_MARKER);
  const end = existing.indexOf(END_MARKER);
  const base =
    start === -1 || end === -1 || end < start
      ? `${existing.trimEnd()}\n\n${START_MARKER}\n${END_MARKER}\n`
      : existing;
  const from = base.indexOf(START_MARKER) + START_MARKER.length;
  const to = base.indexOf(END_MARKER);
  const updated = `${base.slice(0, from)}\n${markdown}\n${base.slice(to)}`;
  await mkdir(dirname(docPath), { recursive: true });
  await mkdir(chartsDir, { recursive: true });
  await writeFile(docPath, updated);
  await Promise.all([...charts].map(([name, svg]) => writeFile(join(chartsDir, name), svg)));
}
