/**
 * The pool layer (OpenZFS SPA). Theory: see docs/on-disk-format.md and pool/pool.ts.
 * This entry file is the only one other layers import.
 */
import { CairnError } from '../util/errors.js';
import type { CreatePoolOptions, ImportablePool, ImportPoolOptions, PoolHandle } from './api.js';

export type * from './api.js';
export type * from './types.js';

export async function createPool(_options: CreatePoolOptions): Promise<PoolHandle> {
  throw new CairnError('ENOTSUP', 'pool creation is being built');
}

export async function importPool(_options: ImportPoolOptions): Promise<PoolHandle> {
  throw new CairnError('ENOTSUP', 'pool import is being built');
}

export async function findImportablePools(_searchPaths: string[]): Promise<ImportablePool[]> {
  return [];
}
