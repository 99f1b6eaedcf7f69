/**
 * Sizes as zfs reads and prints them (zfs_nicestrtonum / zfs_nicenum): powers of 1024, one-letter
 * suffixes, at most five characters when printed ("9.50G", "100M", "512B").
 */
import { formatSize as formatBytes, parseSize } from '../dataset/properties.js';

export { parseSize };

/** zfs_nicebytes (see dataset/properties.ts); '-' for a figure that is not known. */
export function formatSize(bytes: number): string {
  return Number.isFinite(bytes) && bytes >= 0 ? formatBytes(bytes) : '-';
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
