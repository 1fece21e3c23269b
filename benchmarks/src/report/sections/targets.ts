import type { BenchResults } from '../../results.js';
import { table } from '../table.js';

/** What each target is, how durable, and whether it could run. */
export function targetsSection(results: BenchResults): string[] {
  const rows = results.targets.map((target) => [
    `\`${target.name}\``,
    target.kind === 'engine' ? 'raw engine' : target.kind,
    target.description,
    target.durability,
    target.status === 'ok' ? 'measured' : `unavailable: ${target.reason ?? ''}`,
  ]);
  return ['### Targets', '', table(['target', 'kind', 'what', 'durability', 'status'], rows), ''];
}
