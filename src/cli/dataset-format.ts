/**
 * Output layouts of the zfs verbs, as zfs prints them: `list` (property columns, numbers right-aligned,
 * -H tabs, -p exact values, -s/-S sort), `get` (NAME PROPERTY VALUE SOURCE), `holds`, and the
 * `destroy -nv` report. Values are formatted by the property table (dataset/properties.ts), so `list`,
 * `get` and help agree on how each property reads. Pure functions.
 */
import type { DatasetRow, WireDestroyResult, WireProperty } from '../api/index.js';
import { columnHeader, formatCreation, formatPropertyValue, propertyDefinition } from '../dataset/properties.js';
import { formatSize } from './size.js';

export const LIST_DEFAULT_COLUMNS: readonly string[] = ['name', 'used', 'available', 'referenced', 'mountpoint'];
export const GET_FIELDS: readonly string[] = ['name', 'property', 'value', 'source'];

export interface TableOptions {
  /** -H: no header, one tab between fields. */
  scripted: boolean;
  /** -p: exact numbers. */
  parsable: boolean;
}

/** "avail" → "available"; a user property stays as typed; EINVAL for an unknown name. */
export function canonicalProperty(name: string): string {
  return propertyDefinition(name).name;
}

function rightAligned(name: string): boolean {
  const kind = propertyDefinition(name).kind;
  return kind === 'size' || kind === 'number' || kind === 'index';
}

/** A property's value as printed; '-' when the dataset does not have it. */
export function formatCell(property: WireProperty | undefined, parsable: boolean): string {
  if (property === undefined) return '-';
  if (property.value === '-' && property.source === '-') return '-';
  return formatPropertyValue(property.name, property.value, parsable);
}

function findProperty(row: DatasetRow, name: string): WireProperty | undefined {
  if (name === 'name') return { name: 'name', value: row.name, source: '-' };
  return row.properties.find((property) => property.name === name);
}

/** Columns two spaces apart; the last one left unpadded when left-aligned, as zfs does. */
export function layout(table: readonly string[][], right: readonly boolean[]): string {
  const widths = right.map((_, column) => Math.max(...table.map((row) => (row[column] ?? '').length)));
  return table
    .map((row) => {
      const cells = row.map((cell, column) => {
        const width = widths[column] ?? 0;
        if (right[column] === true) return cell.padStart(width);
        return column === row.length - 1 ? cell : cell.padEnd(width);
      });
      return `${cells.join('  ')}\n`;
    })
    .join('');
}

export interface SortKey {
  property: string;
  descending: boolean;
}

function compareValues(a: WireProperty | undefined, b: WireProperty | undefined): number {
  // A dataset without the property sorts after those with it, either direction (zfs does likewise).
  if (a === undefined || b === undefined) return a === b ? 0 : a === undefined ? 1 : -1;
  if (typeof a.value === 'number' && typeof b.value === 'number') return a.value - b.value;
  const x = String(a.value);
  const y = String(b.value);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** list -s/-S: stable, so ties keep the daemon's zfs order. */
export function sortRows(rows: readonly DatasetRow[], keys: readonly SortKey[]): DatasetRow[] {
  if (keys.length === 0) return [...rows];
  return [...rows].sort((a, b) => {
    for (const key of keys) {
      const order = compareValues(findProperty(a, key.property), findProperty(b, key.property));
      if (order !== 0) return key.descending ? -order : order;
    }
    return 0;
  });
}

/** zfs list: one row per dataset, one column per property. */
export function formatDatasetList(rows: readonly DatasetRow[], columns: readonly string[], options: TableOptions): string {
  const body = rows.map((row) => columns.map((column) => formatCell(findProperty(row, column), options.parsable)));
  if (options.scripted) return body.map((cells) => `${cells.join('\t')}\n`).join('');
  return layout([columns.map(columnHeader), ...body], columns.map(rightAligned));
}

/**
 * zfs get: for each dataset, each property asked for ('all': every one it has), in the order asked.
 * A property the dataset does not have prints as '-' with source '-'.
 */
export function formatGet(
  rows: readonly DatasetRow[],
  properties: readonly string[] | 'all',
  fields: readonly string[],
  options: TableOptions,
): string {
  const body: string[][] = [];
  for (const row of rows) {
    const chosen: { name: string; property: WireProperty | undefined }[] =
      properties === 'all'
        ? row.properties.filter((p) => p.name !== 'name').map((p) => ({ name: p.name, property: p }))
        : properties.map((name) => ({ name, property: findProperty(row, name) }));
    for (const { name, property } of chosen) {
      const cells: Record<string, string> = {
        name: row.name,
        property: name,
        value: formatCell(property, options.parsable),
        source: property === undefined ? '-' : property.source,
      };
      body.push(fields.map((field) => cells[field] ?? '-'));
    }
  }
  if (options.scripted) return body.map((cells) => `${cells.join('\t')}\n`).join('');
  return layout([fields.map((field) => field.toUpperCase()), ...body], fields.map(() => false));
}

/** zfs holds: NAME TAG TIMESTAMP. */
export function formatHolds(holds: readonly { name: string; tag: string; createdMs: number }[], scripted: boolean): string {
  const body = holds.map((hold) => [hold.name, hold.tag, formatCreation(Math.floor(hold.createdMs / 1000))]);
  if (scripted) return body.map((cells) => `${cells.join('\t')}\n`).join('');
  return layout([['NAME', 'TAG', 'TIMESTAMP'], ...body], [false, false, false]);
}

/**
 * zfs destroy -v / -n / -p: "would destroy X" (dry run) or "will destroy X", then, for a snapshot
 * destroy, "would reclaim 1.50M"; -p prints "destroy\tX" and "reclaim\t1572864".
 */
export function formatDestroy(
  target: string,
  result: WireDestroyResult,
  options: { dryRun: boolean; parsable: boolean },
): string {
  const verb = options.dryRun ? 'would' : 'will';
  const lines = result.destroyed.map((name) => (options.parsable ? `destroy\t${name}` : `${verb} destroy ${name}`));
  if (target.includes('@')) {
    lines.push(options.parsable ? `reclaim\t${result.reclaimBytes}` : `${verb} reclaim ${formatSize(result.reclaimBytes)}`);
  }
  return lines.map((line) => `${line}\n`).join('');
}
