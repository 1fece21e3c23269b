/** `name` as an SQL identifier, quoted, for SQLite and PostgreSQL alike. */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
