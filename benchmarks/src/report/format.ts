/** How figures read in the report's tables. */
import type { Outcome, TargetInfo } from '../results.js';
import type { NumericField } from '../workloads/context.js';
import { formatNumber } from './svg.js';

/** The median result, when the target was measured. */
export function okResult<R>(outcome: Outcome<R> | undefined): R | undefined {
  return outcome?.status === 'ok' ? outcome.result : undefined;
}

/** One finite figure of a measured outcome. */
export function figure<R>(
  outcome: Outcome<R> | undefined,
  field: NumericField<R>,
): number | undefined {
  const value: unknown = okResult(outcome)?.[field];
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

export function ms(value: number | undefined): string {
  return value === undefined ? '–' : `${formatNumber(value)} ms`;
}

/** An event-loop stall, with the part this process spent on a CPU where the harness measured it. */
export function stall(wallMs: number, onCpuMs: number | undefined): string {
  return onCpuMs === undefined ? ms(wallMs) : `${ms(wallMs)} (${ms(onCpuMs)} on CPU)`;
}

export function ratio(value: number): string {
  if (!Number.isFinite(value) || value <= 0) return '–';
  return `${value >= 10 ? Math.round(value) : value.toFixed(2)}×`;
}

/** Why a target has no figure here, in a table cell. */
export function statusText<R>(outcome: Outcome<R> | undefined): string {
  if (outcome === undefined) return '–';
  if (outcome.status === 'ok') return '–';
  return outcome.status === 'skipped' ? '–' : `_${outcome.status}_`;
}

/** The figure, with its spread over repeats when there were several. */
export function withSpread<R>(
  outcome: Outcome<R> | undefined,
  field: NumericField<R>,
  format: (v: number) => string,
): string {
  const value = figure(outcome, field);
  if (value === undefined) return statusText(outcome);
  if (outcome?.status === 'ok' && outcome.runs.length > 1) {
    const [low, high] = outcome.spread[field] ?? [value, value];
    return `${format(value)} <sub>(${format(low)}–${format(high)})</sub>`;
  }
  return format(value);
}

/** "1.31× raw-sqlite" style: how many times the baseline's figure the target's is. */
export function baselineRatios<R>(
  byTarget: Record<string, Outcome<R>> | undefined,
  target: TargetInfo,
  field: NumericField<R>,
  baselines: string[],
  invert: boolean,
): string {
  const own = figure(byTarget?.[target.name], field);
  if (own === undefined || own === 0) return '–';
  const parts: string[] = [];
  for (const name of baselines) {
    const other = figure(byTarget?.[name], field);
    if (other === undefined || other === 0) continue;
    parts.push(`${ratio(invert ? other / own : own / other)} ${name}`);
  }
  return parts.length > 0 ? parts.join(', ') : '–';
}
