/**
 * Sizes as zfs reads and prints them (zfs_nicestrtonum / zfs_nicenum): powers of 1024, one-letter
 * suffixes, at most five characters when printed ("9.50G", "100M", "512B").
 */
import { CairnError } from '../util/errors.js';

const SUFFIXES = 'BKMGTPE';

/** Parses "10G", "1.5T", "512M", "512", "4KiB", "1kb" into bytes (truncated to a whole byte). */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*([bkmgtpe]?)(?:i?b)?\s*$/i.exec(text);
  if (match === null) throw new CairnError('EINVAL', `bad size '${text}'`);
  const value = Number(match[1]);
  const suffix = (match[2] ?? '').toUpperCase();
  const shift = suffix === '' ? 0 : SUFFIXES.indexOf(suffix) * 10;
  const bytes = Math.floor(value * 2 ** shift);
  if (!Number.isSafeInteger(bytes)) throw new CairnError('EINVAL', `size '${text}' is too large`);
  if (shift === 0 && !Number.isInteger(value)) throw new CairnError('EINVAL', `bad size '${text}': fractional bytes`);
  return bytes;
}

/** zfs_nicebytes: the shortest of 2, 1 or 0 decimals that fits in five characters. */
export function formatSize(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return '-';
  let index = 0;
  let scaled = bytes;
  while (scaled >= 1024 && index < SUFFIXES.length - 1) {
    scaled /= 1024;
    index++;
  }
  const unit = SUFFIXES[index] ?? 'E';
  if (index === 0) return `${bytes}B`;
  if (bytes % 2 ** (10 * index) === 0) return `${scaled}${unit}`;
  let text = '';
  for (let decimals = 2; decimals >= 0; decimals--) {
    text = `${scaled.toFixed(decimals)}${unit}`;
    if (text.length <= 5) break;
  }
  return text;
}

/** Like formatSize, but a plain count ("512", "1.50K") as zpool iostat prints operations. */
export function formatCount(count: number): string {
  const text = formatSize(Math.round(count));
  return text.endsWith('B') ? text.slice(0, -1) : text;
}

/** "00:01:05" as zpool status prints durations. */
export function formatDuration(ms: number): string {
  const totalSeconds = Math.max(0, Math.round(ms / 1000));
  const hours = Math.floor(totalSeconds / 3600);
  const minutes = Math.floor((totalSeconds % 3600) / 60);
  const seconds = totalSeconds % 60;
  const two = (n: number): string => String(n).padStart(2, '0');
  return hours >= 24
    ? `${Math.floor(hours / 24)} days ${two(hours % 24)}:${two(minutes)}:${two(seconds)}`
    : `${two(hours)}:${two(minutes)}:${two(seconds)}`;
}
