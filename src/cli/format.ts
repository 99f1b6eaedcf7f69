/**
 * Output layouts copied from zpool and ls, so users comparing them find the same columns: zpool status
 * (pool/state/scan lines, config tree with READ WRITE CKSUM, errors), zpool list (-H tabs, -p exact
 * numbers), zpool import's listing, zpool history, zpool iostat, and ls -l.
 */
import type { ImportablePool, HistoryEntry, PoolStatus, ScanStatus, VdevStatusNode } from '../pool/index.js';
import type { PoolIostat, WireDirEntry } from '../api/index.js';
import { formatCount, formatDuration, formatSize } from './size.js';

const NAME_COLUMN_MIN = 10;

/** "Wed Nov 25 10:31:36 2026", as ctime(3) prints (zpool status, zpool history use it). */
export function formatCtime(ms: number): string {
  const date = new Date(ms);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const two = (n: number): string => String(n).padStart(2, '0');
  return (
    `${days[date.getDay()] ?? ''} ${months[date.getMonth()] ?? ''} ${String(date.getDate()).padStart(2, ' ')} ` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())} ${date.getFullYear()}`
  );
}

function scanLines(scan: ScanStatus | null, nowMs: number): string[] {
  if (scan === null) return ['  scan: none requested'];
  const verb = scan.function === 'scrub' ? 'scrub' : 'resilver';
  if (scan.state === 'canceled') return [`  scan: ${verb} canceled on ${formatCtime(scan.endMs ?? nowMs)}`];
  if (scan.state === 'finished') {
    const tookMs = (scan.endMs ?? nowMs) - scan.startMs;
    const what = scan.function === 'scrub' ? 'scrub repaired' : 'resilvered';
    return [
      `  scan: ${what} ${formatSize(scan.repairedBytes)} in ${formatDuration(tookMs)} with ${scan.errors} errors ` +
        `on ${formatCtime(scan.endMs ?? nowMs)}`,
    ];
  }
  const elapsedSeconds = Math.max(0.001, (nowMs - scan.startMs) / 1000);
  const rateBytes = scan.examinedBytes / elapsedSeconds;
  const fraction = scan.totalBytes > 0 ? Math.min(1, scan.examinedBytes / scan.totalBytes) : 0;
  const remaining =
    rateBytes > 0 && scan.totalBytes > scan.examinedBytes
      ? `${formatDuration(((scan.totalBytes - scan.examinedBytes) / rateBytes) * 1000)} to go`
      : 'no estimated completion time';
  return [
    `  scan: ${verb} in progress since ${formatCtime(scan.startMs)}`,
    `\t${formatSize(scan.examinedBytes)} / ${formatSize(scan.totalBytes)} scanned at ${formatSize(rateBytes)}/s`,
    `\t${formatSize(scan.repairedBytes)} ${scan.function === 'scrub' ? 'repaired' : 'resilvered'}, ` +
      `${(fraction * 100).toFixed(2)}% done, ${remaining}`,
  ];
}

function hasErrors(node: VdevStatusNode): boolean {
  const { read, write, checksum } = node.errors;
  return read + write + checksum > 0 || node.children.some(hasErrors);
}

function hasState(node: VdevStatusNode, states: readonly string[]): boolean {
  return states.includes(node.state) || node.children.some((child) => hasState(child, states));
}

/** The status:/action: paragraph zpool prints when something needs attention. */
function adviceLines(status: PoolStatus): string[] {
  const config = status.config;
  if (hasState(config, ['OFFLINE'])) {
    return [
      'status: One or more devices has been taken offline by the administrator.',
      '\tSufficient replicas exist for the pool to continue functioning in a',
      '\tdegraded state.',
      "action: Online the device using 'cairn pool online' or replace the device with",
      "\t'cairn pool replace'.",
    ];
  }
  if (hasState(config, ['FAULTED', 'UNAVAIL', 'REMOVED'])) {
    return [
      'status: One or more devices could not be used because the label is missing or',
      '\tinvalid, or the device failed.  Sufficient replicas may exist for the pool to',
      '\tcontinue functioning in a degraded state.',
      "action: Replace the device using 'cairn pool replace'.",
    ];
  }
  if (hasErrors(config)) {
    return [
      'status: One or more devices has experienced an unrecoverable error.  An',
      '\tattempt was made to correct the error.  Applications are unaffected.',
      'action: Determine if the device needs to be replaced, and clear the errors',
      "\tusing 'cairn pool clear' or replace the device with 'cairn pool replace'.",
    ];
  }
  return [];
}

function treeRows(node: VdevStatusNode, depth: number, rows: { indent: number; node: VdevStatusNode }[]): void {
  rows.push({ indent: depth * 2, node });
  for (const child of node.children) treeRows(child, depth + 1, rows);
}

export function formatStatus(status: PoolStatus, options: { verbose: boolean; nowMs?: number }): string {
  const nowMs = options.nowMs ?? Date.now();
  const lines = [`  pool: ${status.name}`, ` state: ${status.health}`, ...adviceLines(status)];
  lines.push(...scanLines(status.scan, nowMs), 'config:', '');
  const rows: { indent: number; node: VdevStatusNode }[] = [];
  treeRows(status.config, 0, rows);
  const nameWidth = Math.max(NAME_COLUMN_MIN, ...rows.map((row) => row.indent + row.node.name.length));
  lines.push(`\t${'NAME'.padEnd(nameWidth)}  ${'STATE'.padEnd(8)} ${'READ'.padStart(5)} ${'WRITE'.padStart(5)} ${'CKSUM'.padStart(5)}`);
  for (const { indent, node } of rows) {
    const name = `${' '.repeat(indent)}${node.name}`.padEnd(nameWidth);
    const counts = [node.errors.read, node.errors.write, node.errors.checksum].map((n) => formatCount(n).padStart(5));
    const note = node.note !== undefined ? `  ${node.note}` : '';
    lines.push(`\t${name}  ${node.state.padEnd(8)} ${counts.join(' ')}${note}`.trimEnd());
  }
  lines.push('');
  if (status.dataErrors.length === 0) lines.push('errors: No known data errors');
  else if (!options.verbose) lines.push(`errors: ${status.dataErrors.length} data errors, use '-v' for a list`);
  else {
    lines.push('errors: Permanent errors have been detected in the following files:', '');
    for (const path of status.dataErrors) lines.push(`        ${path}`);
  }
  return `${lines.join('\n')}\n`;
}

export const LIST_COLUMNS = ['NAME', 'SIZE', 'ALLOC', 'FREE', 'FRAG', 'CAP', 'HEALTH'] as const;

function listRow(status: PoolStatus, parsable: boolean): string[] {
  const { space } = status;
  const size = (bytes: number): string => (Number.isNaN(bytes) ? '-' : parsable ? String(bytes) : formatSize(bytes));
  const percent = (value: number): string =>
    Number.isNaN(value) ? '-' : parsable ? String(Math.round(value)) : `${Math.round(value)}%`;
  return [
    status.name,
    size(space.sizeBytes),
    size(space.allocatedBytes),
    size(space.freeBytes),
    percent(space.fragmentationPercent),
    percent(space.capacityPercent),
    status.health,
  ];
}

/** zpool list: NAME left-aligned, everything else right-aligned; -H: no header, tab-separated. */
export function formatList(pools: readonly PoolStatus[], options: { scripted: boolean; parsable: boolean }): string {
  const rows = pools.map((pool) => listRow(pool, options.parsable));
  if (options.scripted) return rows.map((row) => `${row.join('\t')}\n`).join('');
  const table = [[...LIST_COLUMNS], ...rows];
  const widths = LIST_COLUMNS.map((_, column) => Math.max(...table.map((row) => (row[column] ?? '').length)));
  return table
    .map(
      (row) =>
        `${row
          .map((cell, column) =>
            column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0),
          )
          .join('  ')}\n`,
    )
    .join('');
}

/** zpool import with no pool named: one stanza per importable pool. */
export function formatImportable(pools: readonly ImportablePool[]): string {
  return pools
    .map((pool) => {
      const nameWidth = Math.max(NAME_COLUMN_MIN, pool.name.length, ...pool.devices.map((device) => device.length + 2));
      const lines = [
        `   pool: ${pool.name}`,
        `     id: ${pool.guid}`,
        `  state: ${pool.health}`,
        ' action: The pool can be imported using its name or numeric identifier.',
        ' config:',
        '',
        `\t${pool.name.padEnd(nameWidth)}  ${pool.health}`,
        ...pool.devices.map((device) => `\t  ${device.padEnd(nameWidth - 2)}`.trimEnd()),
      ];
      return `${lines.join('\n')}\n`;
    })
    .join('\n');
}

/** zpool history: "2026-11-25.10:31:36 cairn pool create ..." in local time. */
export function formatHistory(name: string, entries: readonly HistoryEntry[]): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  const lines = [`History for '${name}':`];
  for (const entry of entries) {
    const date = new Date(entry.timeMs);
    const stamp =
      `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}.` +
      `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
    lines.push(`${stamp} ${entry.command}`);
  }
  return `${lines.join('\n')}\n`;
}

export function formatIostatHeader(nameWidth: number): string {
  const width = Math.max(NAME_COLUMN_MIN, nameWidth);
  const dashes = '-'.repeat(5);
  return [
    `${''.padEnd(width)}    capacity     operations     bandwidth`,
    `${'pool'.padEnd(width)}  alloc   free   read  write   read  write`,
    `${'-'.repeat(width)}  ${[dashes, dashes, dashes, dashes, dashes, dashes].join('  ')}`,
  ].join('\n');
}

/** One iostat line: rates over elapsedMs (the first report: since import, as zpool's). */
export function formatIostatRow(
  nameWidth: number,
  row: PoolIostat,
  deltas: { readOps: number; writeOps: number; readBytes: number; writeBytes: number },
  elapsedMs: number,
): string {
  const seconds = Math.max(0.001, elapsedMs / 1000);
  const width = Math.max(NAME_COLUMN_MIN, nameWidth);
  const cells = [
    formatSize(row.space.allocatedBytes),
    formatSize(row.space.freeBytes),
    formatCount(deltas.readOps / seconds),
    formatCount(deltas.writeOps / seconds),
    formatCount(deltas.readBytes / seconds),
    formatCount(deltas.writeBytes / seconds),
  ];
  return `${row.name.padEnd(width)}  ${cells.map((cell) => cell.padStart(5)).join('  ')}`;
}

/** "drwxr-xr-x" from st_mode. */
export function formatMode(kind: WireDirEntry['kind'], mode: number): string {
  const type = kind === 'directory' ? 'd' : kind === 'symlink' ? 'l' : '-';
  const bits = 'rwxrwxrwx';
  let text = type;
  for (let i = 0; i < 9; i++) text += (mode & (1 << (8 - i))) !== 0 ? bits[i] : '-';
  return text;
}

/** ls -l lines for a page of entries, columns sized to the page. */
export function formatLongListing(entries: readonly WireDirEntry[], nowMs: number = Date.now()): string {
  const rows = entries.map((entry) => {
    const stat = entry.stat;
    const mtimeMs = stat === undefined ? 0 : Number(BigInt(stat.mtimeNs) / 1_000_000n);
    return {
      mode: formatMode(entry.kind, stat?.mode ?? 0),
      nlink: String(stat?.nlink ?? 0),
      uid: String(stat?.uid ?? 0),
      gid: String(stat?.gid ?? 0),
      size: String(stat?.sizeBytes ?? 0),
      time: formatLsTime(mtimeMs, nowMs),
      name: entry.target !== undefined ? `${entry.name} -> ${entry.target}` : entry.name,
    };
  });
  const width = (key: 'nlink' | 'uid' | 'gid' | 'size'): number => Math.max(0, ...rows.map((row) => row[key].length));
  const widths = { nlink: width('nlink'), uid: width('uid'), gid: width('gid'), size: width('size') };
  return rows
    .map(
      (row) =>
        `${row.mode} ${row.nlink.padStart(widths.nlink)} ${row.uid.padEnd(widths.uid)} ${row.gid.padEnd(widths.gid)} ` +
        `${row.size.padStart(widths.size)} ${row.time} ${row.name}\n`,
    )
    .join('');
}

/** ls's time column: "Nov 25 10:31" within six months, "Nov 25  2025" otherwise. */
function formatLsTime(ms: number, nowMs: number): string {
  const date = new Date(ms);
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const day = `${months[date.getMonth()] ?? ''} ${String(date.getDate()).padStart(2, ' ')}`;
  const sixMonthsMs = 182 * 24 * 3600 * 1000;
  if (Math.abs(nowMs - ms) < sixMonthsMs) {
    return `${day} ${String(date.getHours()).padStart(2, '0')}:${String(date.getMinutes()).padStart(2, '0')}`;
  }
  return `${day}  ${date.getFullYear()}`;
}

/** zpool status for a remembered pool the daemon could not import at start. */
export function formatUnavailableStatus(name: string, reason: string): string {
  return (
    `  pool: ${name}\n state: UNAVAIL\n` +
    `status: The pool could not be imported when cairnd started:\n\t${reason}\n` +
    `action: Make its devices available and run 'cairn pool import ${name}',\n` +
    `\tor 'cairn pool export ${name}' to forget it.\n`
  );
}

/** A zpool list row for such a pool: no space figures, health UNAVAIL. */
export function unavailableListRow(name: string): PoolStatus {
  const none = { sizeBytes: Number.NaN, allocatedBytes: Number.NaN, freeBytes: Number.NaN, fragmentationPercent: Number.NaN, capacityPercent: Number.NaN };
  return {
    name,
    guid: '',
    health: 'UNAVAIL',
    txg: 0,
    space: none,
    scan: null,
    config: { name, state: 'UNAVAIL', errors: { read: 0, write: 0, checksum: 0 }, children: [] },
    dataErrors: [],
  };
}
