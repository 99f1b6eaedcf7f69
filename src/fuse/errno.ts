/**
 * Errno numbers the adapter answers with, and the error that carries one straight to the kernel. Kept
 * apart from mount.ts so the snapshot namespace (snapshot-dir.ts) can answer ESTALE, which has no
 * CairnError code: it only means something between the kernel's caches and a file system.
 */
import { constants as osConstants } from 'node:os';

export const ERRNO = osConstants.errno as Readonly<Record<string, number>>;
export const E = {
  EIO: ERRNO['EIO'] ?? 5,
  ENOSYS: ERRNO['ENOSYS'] ?? 38,
  EROFS: ERRNO['EROFS'] ?? 30,
  EEXIST: ERRNO['EEXIST'] ?? 17,
  EISDIR: ERRNO['EISDIR'] ?? 21,
  EINVAL: ERRNO['EINVAL'] ?? 22,
  EPERM: ERRNO['EPERM'] ?? 1,
  ERANGE: ERRNO['ERANGE'] ?? 34,
  EOPNOTSUPP: ERRNO['EOPNOTSUPP'] ?? 95,
  ENOENT: ERRNO['ENOENT'] ?? 2,
  EINTR: ERRNO['EINTR'] ?? 4,
  EAGAIN: ERRNO['EAGAIN'] ?? 11,
  ENODEV: ERRNO['ENODEV'] ?? 19,
  ESTALE: ERRNO['ESTALE'] ?? 116,
  EACCES: ERRNO['EACCES'] ?? 13,
} as const;

/** A reply that is just an errno, raised inside handlers. */
export class ErrnoReply extends Error {
  constructor(readonly errnoNumber: number) {
    super(`errno ${errnoNumber}`);
  }
}
