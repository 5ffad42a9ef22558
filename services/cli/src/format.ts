// Small output helpers shared by the commands.

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return (
    rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n') + '\n'
  );
}

/** The first 12 hex digits of a digest, as tables show it ("-" when there is none). */
export const shortDigest = (digest: string): string => (digest ? digest.slice(0, 12) : '-');
