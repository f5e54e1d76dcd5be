import Table from 'cli-table3';

/** A plain terminal table; colors are left to the caller so that piped output stays clean. */
export function renderTable(head: string[], rows: string[][]): string {
  const table = new Table({ head, style: { head: [], border: [] } });
  table.push(...rows);
  return table.toString();
}
