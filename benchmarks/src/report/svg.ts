/**
 * Charts as hand-written SVG strings: no browser, no canvas, no dependency. Each function returns
 * a complete standalone SVG document.
 */

export type SeriesKind = 'sessile' | 'engine' | 'peer';

const KIND_COLORS: Record<SeriesKind, string> = {
  sessile: '#2563eb',
  engine: '#6b7280',
  peer: '#ea580c',
};
const LINE_COLORS = [
  '#2563eb',
  '#ea580c',
  '#059669',
  '#9333ea',
  '#dc2626',
  '#0891b2',
  '#ca8a04',
  '#db2777',
  '#4b5563',
  '#65a30d',
  '#7c3aed',
  '#0f766e',
  '#b45309',
  '#be123c',
  '#1e3a8a',
  '#15803d',
  '#a21caf',
  '#57534e',
];
const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';

export function escapeXml(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;');
}

/** Compact number for axis labels and bar ends: 1234 -> 1.23k, 0.0123 -> 0.012. */
export function formatNumber(value: number): string {
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${trim(value / 1e6)}M`;
  if (abs >= 1e3) return `${trim(value / 1e3)}k`;
  if (abs >= 100 || abs === 0) return String(Math.round(value));
  if (abs >= 1) return trim(value);
  return String(Number(value.toPrecision(2)));
}

function trim(value: number): string {
  return Number(value.toPrecision(3)).toString();
}

function svgDocument(width: number, height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${escapeXml(title)}">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="24" ${FONT} font-size="15" font-weight="600" fill="#111827">${escapeXml(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/** A logarithmic scale when values span more than two decades, else linear from 0. */
function scale(
  values: number[],
  from: number,
  to: number,
  forceLog = false,
): { at(v: number): number; ticks: number[]; log: boolean } {
  const positive = values.filter((v) => v > 0);
  const max = Math.max(...positive, 1e-9);
  const min = Math.min(...positive, max);
  const log = forceLog || (positive.length > 1 && max / min > 100);
  if (log) {
    const low = 10 ** Math.floor(Math.log10(min));
    const high = 10 ** Math.ceil(Math.log10(max));
    const span = Math.log10(high) - Math.log10(low) || 1;
    const ticks: number[] = [];
    for (let tick = low; tick <= high * 1.0001; tick *= 10) ticks.push(tick);
    return {
      at: (v) => from + ((Math.log10(Math.max(v, low)) - Math.log10(low)) / span) * (to - from),
      ticks,
      log,
    };
  }
  const step = niceStep(max / 4);
  const high = Math.ceil(max / step) * step || 1;
  const ticks: number[] = [];
  for (let tick = 0; tick <= high + step / 2; tick += step) ticks.push(tick);
  return { at: (v) => from + (Math.max(v, 0) / high) * (to - from), ticks, log };
}

function niceStep(raw: number): number {
  const power = 10 ** Math.floor(Math.log10(raw || 1));
  const fraction = raw / power;
  return (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
}

export interface Bar {
  label: string;
  value: number;
  kind: SeriesKind;
  /** Shown after the value, e.g. "timed out" or "0.8× raw-sqlite". */
  note?: string;
}

/** A horizontal bar per target, coloured by kind (sessile, raw engine, peer). */
export function barChart(title: string, unit: string, bars: Bar[]): string {
  // About 7 px per character of a 12 px label, plus a margin.
  const labelWidth = Math.max(120, 24 + 7 * Math.max(0, ...bars.map((bar) => bar.label.length)));
  const chartWidth = 440;
  const width = labelWidth + chartWidth + 190;
  const rowHeight = 22;
  const top = 58;
  const height = top + bars.length * rowHeight + 46;
  const axis = scale(
    bars.map((bar) => bar.value),
    labelWidth,
    labelWidth + chartWidth,
  );
  const body: string[] = [
    `<text x="16" y="44" ${FONT} font-size="12" fill="#4b5563">${escapeXml(unit)}${axis.log ? ' (log scale)' : ''}</text>`,
  ];
  const axisY = top + bars.length * rowHeight + 4;
  for (const tick of axis.ticks) {
    const x = axis.at(tick).toFixed(1);
    body.push(
      `<line x1="${x}" y1="${top - 4}" x2="${x}" y2="${axisY}" stroke="#e5e7eb" stroke-width="1"/>`,
    );
    body.push(
      `<text x="${x}" y="${axisY + 14}" ${FONT} font-size="11" fill="#6b7280" text-anchor="middle">${formatNumber(tick)}</text>`,
    );
  }
  bars.forEach((bar, index) => {
    const y = top + index * rowHeight;
    const end = bar.value > 0 ? axis.at(bar.value) : labelWidth;
    body.push(
      `<text x="${labelWidth - 8}" y="${y + 15}" ${FONT} font-size="12" fill="#111827" text-anchor="end">${escapeXml(bar.label)}</text>`,
    );
    if (bar.value > 0) {
      body.push(
        `<rect x="${labelWidth}" y="${y + 4}" width="${Math.max(1, end - labelWidth).toFixed(1)}" height="${rowHeight - 8}" fill="${KIND_COLORS[bar.kind]}" rx="2"/>`,
      );
    }
    const text = bar.value > 0 ? formatNumber(bar.value) : '';
    const note = bar.note === undefined ? '' : `${text === '' ? '' : '  '}${bar.note}`;
    body.push(
      `<text x="${(end + 6).toFixed(1)}" y="${y + 15}" ${FONT} font-size="11" fill="#374151">${escapeXml(text + note)}</text>`,
    );
  });
  const legendY = height - 12;
  (['sessile', 'engine', 'peer'] as const).forEach((kind, index) => {
    const x = 16 + index * 150;
    body.push(
      `<rect x="${x}" y="${legendY - 9}" width="10" height="10" fill="${KIND_COLORS[kind]}"/>`,
    );
    const name =
      kind === 'sessile' ? 'sessile store' : kind === 'engine' ? 'raw engine' : 'peer store';
    body.push(
      `<text x="${x + 14}" y="${legendY}" ${FONT} font-size="11" fill="#374151">${name}</text>`,
    );
  });
  return svgDocument(width, height, title, body);
}

export interface LineSeries {
  label: string;
  points: { x: number; y: number }[];
  dashed?: boolean;
}

/** Lines over log-log axes, e.g. insert latency against store size. */
export function lineChart(
  title: string,
  xLabel: string,
  yLabel: string,
  series: LineSeries[],
): string {
  const left = 70;
  const top = 64;
  const plotWidth = 520;
  const plotHeight = 300;
  const width = left + plotWidth + 250;
  const height = top + plotHeight + 50;
  const xs = series.flatMap((line) => line.points.map((point) => point.x));
  const ys = series.flatMap((line) => line.points.map((point) => point.y));
  const xAxis = scale(xs, left, left + plotWidth, true);
  const yAxis = scale(ys, top + plotHeight, top, true);
  const body: string[] = [];
  for (const tick of xAxis.ticks) {
    const x = xAxis.at(tick).toFixed(1);
    body.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + plotHeight}" stroke="#e5e7eb"/>`);
    body.push(
      `<text x="${x}" y="${top + plotHeight + 16}" ${FONT} font-size="11" fill="#6b7280" text-anchor="middle">${formatNumber(tick)}</text>`,
    );
  }
  for (const tick of yAxis.ticks) {
    const y = yAxis.at(tick).toFixed(1);
    body.push(`<line x1="${left}" y1="${y}" x2="${left + plotWidth}" y2="${y}" stroke="#e5e7eb"/>`);
    body.push(
      `<text x="${left - 6}" y="${(Number(y) + 4).toFixed(1)}" ${FONT} font-size="11" fill="#6b7280" text-anchor="end">${formatNumber(tick)}</text>`,
    );
  }
  body.push(
    `<text x="${left + plotWidth / 2}" y="${height - 10}" ${FONT} font-size="12" fill="#374151" text-anchor="middle">${escapeXml(xLabel)}</text>`,
  );
  body.push(
    `<text x="16" y="${top - 10}" ${FONT} font-size="12" fill="#374151">${escapeXml(yLabel)}</text>`,
  );
  series.forEach((line, index) => {
    const color = LINE_COLORS[index % LINE_COLORS.length] as string;
    const path = line.points
      .map((point) => `${xAxis.at(point.x).toFixed(1)},${yAxis.at(point.y).toFixed(1)}`)
      .join(' ');
    if (line.points.length > 1) {
      body.push(
        `<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2"${line.dashed ? ' stroke-dasharray="5 4"' : ''}/>`,
      );
    }
    for (const point of line.points) {
      body.push(
        `<circle cx="${xAxis.at(point.x).toFixed(1)}" cy="${yAxis.at(point.y).toFixed(1)}" r="3" fill="${color}"/>`,
      );
    }
    const legendY = top + 8 + index * 18;
    body.push(
      `<line x1="${left + plotWidth + 20}" y1="${legendY - 4}" x2="${left + plotWidth + 40}" y2="${legendY - 4}" stroke="${color}" stroke-width="2"${line.dashed ? ' stroke-dasharray="5 4"' : ''}/>`,
    );
    body.push(
      `<text x="${left + plotWidth + 46}" y="${legendY}" ${FONT} font-size="11" fill="#374151">${escapeXml(line.label)}</text>`,
    );
  });
  return svgDocument(width, height, title, body);
}

export interface TimelinePanel {
  label: string;
  /** A one-line summary under the label. */
  summary: string;
  points: { atMs: number; maxMs: number; p99Ms: number }[];
  /** [from, to] ms of each cleanup. */
  windows: [number, number][];
}

/**
 * Small multiples sharing one latency axis (log): for each target, the worst and p99 request
 * latency per time bucket, with its cleanup windows shaded.
 */
export function timelineChart(title: string, panels: TimelinePanel[]): string {
  const left = 16;
  const plotWidth = 760;
  const panelHeight = 56;
  const gap = 30;
  const top = 78;
  const width = left + plotWidth + 40;
  const height = top + panels.length * (panelHeight + gap) + 40;
  const allLatencies = panels.flatMap((panel) =>
    panel.points.flatMap((point) => [point.maxMs, point.p99Ms]),
  );
  const maxAt = Math.max(
    1,
    ...panels.flatMap((panel) => [
      ...panel.points.map((point) => point.atMs),
      ...panel.windows.map(([, to]) => to),
    ]),
  );
  const floorMs = 0.1;
  const high = 10 ** Math.ceil(Math.log10(Math.max(floorMs * 10, ...allLatencies)));
  const yOf = (value: number, panelTop: number) => {
    const fraction =
      (Math.log10(Math.max(value, floorMs)) - Math.log10(floorMs)) /
      (Math.log10(high) - Math.log10(floorMs));
    return panelTop + panelHeight - fraction * panelHeight;
  };
  const xOf = (atMs: number) => left + (atMs / maxAt) * plotWidth;
  const body: string[] = [
    `<text x="16" y="44" ${FONT} font-size="12" fill="#4b5563">request latency per time bucket, log scale ${formatNumber(floorMs)}–${formatNumber(high)} ms · line: worst · dots: p99 · shaded: cleanup running</text>`,
  ];
  panels.forEach((panel, index) => {
    const panelTop = top + index * (panelHeight + gap);
    body.push(
      `<rect x="${left}" y="${panelTop}" width="${plotWidth}" height="${panelHeight}" fill="#f9fafb" stroke="#e5e7eb"/>`,
    );
    for (const [from, to] of panel.windows) {
      body.push(
        `<rect x="${xOf(from).toFixed(1)}" y="${panelTop}" width="${Math.max(1, xOf(to) - xOf(from)).toFixed(1)}" height="${panelHeight}" fill="#fde68a" opacity="0.7"/>`,
      );
    }
    for (const tick of [1, 10, 100, 1000]) {
      if (tick > floorMs && tick < high) {
        const y = yOf(tick, panelTop).toFixed(1);
        body.push(
          `<line x1="${left}" y1="${y}" x2="${left + plotWidth}" y2="${y}" stroke="#e5e7eb" stroke-dasharray="2 3"/>`,
        );
        body.push(
          `<text x="${left + plotWidth + 4}" y="${(Number(y) + 3).toFixed(1)}" ${FONT} font-size="9" fill="#9ca3af">${formatNumber(tick)}</text>`,
        );
      }
    }
    const path = panel.points
      .map((point) => `${xOf(point.atMs).toFixed(1)},${yOf(point.maxMs, panelTop).toFixed(1)}`)
      .join(' ');
    if (panel.points.length > 1)
      body.push(`<polyline points="${path}" fill="none" stroke="#dc2626" stroke-width="1.5"/>`);
    for (const point of panel.points) {
      body.push(
        `<circle cx="${xOf(point.atMs).toFixed(1)}" cy="${yOf(point.p99Ms, panelTop).toFixed(1)}" r="1.3" fill="#2563eb"/>`,
      );
    }
    body.push(
      `<text x="${left}" y="${panelTop - 6}" ${FONT} font-size="12" fill="#4b5563"><tspan font-weight="600" fill="#111827">${escapeXml(panel.label)}</tspan>  ${escapeXml(panel.summary)}</text>`,
    );
  });
  const axisY = top + panels.length * (panelHeight + gap);
  const step = niceStep(maxAt / 1000 / 6) * 1000;
  for (let tick = 0; tick <= maxAt; tick += step) {
    body.push(
      `<text x="${xOf(tick).toFixed(1)}" y="${axisY}" ${FONT} font-size="11" fill="#6b7280" text-anchor="middle">${formatNumber(tick / 1000)} s</text>`,
    );
  }
  return svgDocument(width, height, title, body);
}
