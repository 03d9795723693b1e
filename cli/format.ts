/** Plain-text tables and human-readable numbers for the CLI. */

/** 1234567 → "1.23M"; keeps three significant digits. */
export function human(n: number): string {
  const abs = Math.abs(n);
  const units: [number, string][] = [
    [1e12, 'T'],
    [1e9, 'G'],
    [1e6, 'M'],
    [1e3, 'k'],
  ];
  for (const [scale, suffix] of units) if (abs >= scale) return `${(n / scale).toPrecision(3)}${suffix}`;
  return Number.isInteger(n) ? String(n) : n.toPrecision(3);
}

export function percent(part: number, whole: number): string {
  return whole > 0 ? `${((100 * part) / whole).toFixed(1)}%` : '-';
}

export type Align = 'left' | 'right';

/** Render rows as a padded table with a header rule. */
export function table(
  header: readonly string[],
  rows: readonly (readonly string[])[],
  align: readonly Align[] = [],
): string {
  const widths = header.map((h, col) => Math.max(h.length, ...rows.map((r) => (r[col] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, col) => (align[col] === 'right' ? c.padStart(widths[col]!) : c.padEnd(widths[col]!)))
      .join('  ')
      .trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function formatShape(shape: readonly (number | string | null)[] | undefined): string {
  if (!shape) return '?';
  return `[${shape.map((d) => (d === null ? '?' : String(d))).join(',')}]`;
}
