/** How figures read in the report's tables. */
import { median } from '../measure.js';
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

/**
 * `own` over `other`, given each one's figure run by run (undefined where a run has none): the
 * median of the runs' own ratios when the two were measured in the same runs (each repeat
 * measures every target once, close together in time, so a slow spell of the machine moves both
 * sides of that repeat's ratio), else the ratio of their medians. Undefined when either has none.
 */
export function medianRatio(
  own: readonly (number | undefined)[],
  other: readonly (number | undefined)[],
): number | undefined {
  const measured = (values: readonly (number | undefined)[]) =>
    values.filter((value): value is number => value !== undefined && value > 0);
  const a = measured(own);
  const b = measured(other);
  if (a.length === 0 || b.length === 0) return undefined;
  if (own.length !== other.length) return median(a) / median(b);
  const ratios = own.flatMap((value, i) => {
    const base = other[i];
    return value === undefined || base === undefined || !(value > 0) || !(base > 0)
      ? []
      : [value / base];
  });
  return ratios.length > 0 ? median(ratios) : median(a) / median(b);
}

/** `own` over `other` in `field`, as `medianRatio` pairs them. */
export function pairedRatio<R>(
  own: Outcome<R> | undefined,
  other: Outcome<R> | undefined,
  field: NumericField<R>,
): number | undefined {
  const valuesOf = (outcome: Outcome<R> | undefined) =>
    outcome?.status === 'ok'
      ? outcome.runs.map((run) => {
          const value: unknown = run[field];
          return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
        })
      : [];
  return medianRatio(valuesOf(own), valuesOf(other));
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
  const own = byTarget?.[target.name];
  const parts: string[] = [];
  for (const name of baselines) {
    const other = byTarget?.[name];
    const value = invert ? pairedRatio(other, own, field) : pairedRatio(own, other, field);
    if (value !== undefined) parts.push(`${ratio(value)} ${name}`);
  }
  return parts.length > 0 ? parts.join(', ') : '–';
}
