/**
 * Operating errors: one append-only registry of stable codes, each with the POSIX errno the FUSE, NBD and
 * CLI layers translate it to. A CairnError crosses the daemon API as { code, message, data } and is
 * rebuilt on the other side with fromWire(). Never renumber or reuse a code; add new ones at the end.
 */
export const ERROR_CODES = {
  EIO: { errno: 'EIO', summary: 'I/O error or unrecoverable checksum error' },
  ECKSUM: { errno: 'EIO', summary: 'checksum mismatch' },
  ENOENT: { errno: 'ENOENT', summary: 'no such file, directory, pool or device' },
  EEXIST: { errno: 'EEXIST', summary: 'already exists' },
  ENOTDIR: { errno: 'ENOTDIR', summary: 'not a directory' },
  EISDIR: { errno: 'EISDIR', summary: 'is a directory' },
  ENOTEMPTY: { errno: 'ENOTEMPTY', summary: 'directory not empty' },
  ENOSPC: { errno: 'ENOSPC', summary: 'out of space' },
  EINVAL: { errno: 'EINVAL', summary: 'invalid argument' },
  EBUSY: { errno: 'EBUSY', summary: 'in use' },
  EPOOLINUSE: { errno: 'EBUSY', summary: 'pool is imported by another process' },
  EBADLABEL: { errno: 'EINVAL', summary: 'device has no valid Cairn label' },
  EFOREIGN: { errno: 'EINVAL', summary: 'device belongs to another pool' },
  EBADSPEC: { errno: 'EINVAL', summary: 'invalid vdev specification' },
  ENOREPLICAS: { errno: 'EIO', summary: 'no valid replicas' },
  EVERSION: { errno: 'ENOTSUP', summary: 'unsupported on-disk version' },
  ENAMETOOLONG: { errno: 'ENAMETOOLONG', summary: 'name too long' },
  EROFS: { errno: 'EROFS', summary: 'read-only' },
  ENOTSUP: { errno: 'ENOTSUP', summary: 'operation not supported' },
  EPROTO: { errno: 'EPROTO', summary: 'malformed request or stream' },
  ENODAEMON: { errno: 'ECONNREFUSED', summary: 'daemon not reachable' },
  EFAULTED: { errno: 'EIO', summary: 'pool or device is faulted' },
  EPERM: { errno: 'EPERM', summary: 'operation not permitted' },
  ELOOP: { errno: 'ELOOP', summary: 'too many levels of symbolic links' },
  ENODATA: { errno: 'ENODATA', summary: 'no such attribute' },
  E2BIG: { errno: 'E2BIG', summary: 'argument list or attribute value too large' },
  ERANGE: { errno: 'ERANGE', summary: 'result out of range (attribute name too long)' },
  EOPNOTSUPP: { errno: 'EOPNOTSUPP', summary: 'operation not supported (unknown attribute namespace)' },
  EXDEV: { errno: 'EXDEV', summary: 'cross-device link (rename or hard link across datasets)' },
  EDQUOT: { errno: 'EDQUOT', summary: 'disk quota exceeded' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class CairnError extends Error {
  override name = 'CairnError';
  readonly code: ErrorCode;
  readonly data: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, data: Record<string, unknown> = {}) {
    super(message);
    this.code = code;
    this.data = data;
  }

  /**
   * An error that answers a question a hot path asks thousands of times a second (is this name in the
   * directory? every create asks first), made without a stack trace: capturing one cost a lookup that
   * missed a sixth of its time. An answer, not a failure anyone debugs.
   */
  static answer(code: ErrorCode, message: string, data?: Record<string, unknown>): CairnError {
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new CairnError(code, message, data);
    } finally {
      Error.stackTraceLimit = stackTraceLimit;
    }
  }

  get errno(): string {
    return ERROR_CODES[this.code].errno;
  }

  toWire(): { code: ErrorCode; message: string; data: Record<string, unknown> } {
    return { code: this.code, message: this.message, data: this.data };
  }

  static fromWire(wire: { code: string; message: string; data?: Record<string, unknown> }): CairnError {
    const code = (wire.code in ERROR_CODES ? wire.code : 'EIO') as ErrorCode;
    return new CairnError(code, wire.message, wire.data ?? {});
  }
}

export function isCairnError(e: unknown, code?: ErrorCode): e is CairnError {
  return e instanceof CairnError && (code === undefined || e.code === code);
}
