function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

function width(text: string): number {
  return [...text].length;
}

/** A markdown table padded the way the repository's formatter (biome) lays tables out. */
export function table(headers: string[], rows: string[][]): string {
  const cells = [headers, ...rows].map((row) => headers.map((_, index) => cell(row[index] ?? '')));
  const widths = headers.map((_, index) =>
    Math.max(3, ...cells.map((row) => width(row[index] ?? ''))),
  );
  // Figures align right; a column with any prose in it aligns left.
  const right = headers.map(
    (_, index) => index > 0 && rows.every((row) => /^([\d–_*]|$)/.test(row[index] ?? '')),
  );
  const line = (row: string[]) =>
    `| ${row
      .map((text, index) => {
        const pad = ' '.repeat((widths[index] ?? 3) - width(text));
        return right[index] ? pad + text : text + pad;
      })
      .join(' | ')} |`;
  const separator = `| ${widths.map((w, index) => (right[index] ? `${'-'.repeat(w - 1)}:` : '-'.repeat(w))).join(' | ')} |`;
  const [head, ...body] = cells;
  return [line(head ?? []), separator, ...body.map(line)].join('\n');
}
