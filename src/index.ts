/**
 * Cairn as a library: the same engine the daemon runs, in-process. An embedding program that imports a
 * pool becomes its one owner (invariant 5), so it must not also be imported by a running cairnd.
 *
 *   import { createPool, openPool } from 'cairn';
 *   const pool = await openPool({ nameOrGuid: 'tank', searchPaths: ['/data'] });
 */
import { createPool, findImportablePools, importPool } from './pool/index.js';

export { createPool, findImportablePools, importPool };
/** Opens (imports) an existing pool; the name `zpool import` would use. */
export const openPool = importPool;
export type * from './pool/index.js';
export type { FileSystemApi, Stat, DirEntry, FileKind, SetAttr, CreateOptions } from './fs/types.js';
export { CairnError, isCairnError, ERROR_CODES, type ErrorCode } from './util/errors.js';
