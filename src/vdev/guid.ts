import { randomBytes } from 'node:crypto';

/** A random 64-bit vdev GUID as 16 hex digits (never all zero). */
export function randomGuid(): string {
  for (;;) {
    const guid = randomBytes(8).toString('hex');
    if (guid !== '0000000000000000') return guid;
  }
}
