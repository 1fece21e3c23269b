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
 * `own` over `other` in `field`: the median of the repeats' own ratios when both were measured in
 * every repeat (each repeat measures every target once, close together in time, so a slow spell
 * of the machine moves both sides of that repeat's ratio), else the ratio of their medians.
 * Undefined when either is missing or zero.
 */
export function pairedRatio<R>(
  own: Outcome<R> | undefined,
  other: Outcome<R> | undefined,
  field: NumericField<R>,
): number | undefined {
  const a = figure(own, field);
  const b = figure(other, field);
  if (a === undefined || b === undefined || a === 0 || b === 0) return undefined;
  if (own?.status !== 'ok' || other?.status !== 'ok' || own.runs.length !== other.runs.length) {
    return a / b;
  }
  const ratios: number[] = [];
  for (const [i, run] of own.runs.entries()) {
    const x: unknown = run[field];
    const y: unknown = (other.runs[i] as R)[field];
    if (typeof x !== 'number' || typeof y !== 'number' || !(x > 0) || !(y > 0)) return a / b;
    ratios.push(x / y);
  }
  return median(ratios);
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
