/**
 * Dataset names as OpenZFS checks them (zfs_namecheck.c, zfs_validate_name in libzfs):
 *
 *   pool[/component]*[@snapshot]
 *
 * Every component, the snapshot part included, is made of ASCII letters, digits and `- _ . :` or a
 * space; it is never empty, never "." or "..". There is at most one '@', and nothing after it may
 * contain '/'. The whole name is shorter than ZFS_MAX_DATASET_NAME_LEN (256) bytes, and a dataset is
 * nested fewer than 50 levels deep (zfs_max_dataset_nesting), which bounds every walk up or down the tree.
 * '%' is kept out of user-given names: OpenZFS reserves it for internal temporary clones, and so do we.
 * '#' (bookmarks) is not supported yet and is refused as an invalid character.
 *
 * The checks run in the order zfs runs them, so the first message a user sees is the one zfs would give.
 * Pure functions, no I/O.
 */
import { CairnError } from '../util/errors.js';

/** Names are shorter than this many bytes (ZFS_MAX_DATASET_NAME_LEN). */
export const DATASET_NAME_LENGTH_BYTES_MAX = 256;
/** A dataset may have fewer than this many '/' in its name (zfs_max_dataset_nesting). */
export const DATASET_NESTING_DEPTH_MAX = 50;

export interface DatasetName {
  pool: string;
  /** Components below the pool: [] for the pool's root dataset. */
  path: string[];
  /** The part after '@', when the name is a snapshot's. */
  snapshot?: string;
}

function isValidChar(code: number): boolean {
  return (
    (code >= 0x61 && code <= 0x7a) || // a-z
    (code >= 0x41 && code <= 0x5a) || // A-Z
    (code >= 0x30 && code <= 0x39) || // 0-9
    code === 0x2d || // -
    code === 0x5f || // _
    code === 0x2e || // .
    code === 0x3a || // :
    code === 0x20 // space
  );
}

function invalid(message: string, name: string): CairnError {
  return new CairnError('EINVAL', `invalid name '${name}': ${message}`, { name });
}

function tooLong(name: string): CairnError {
  return new CairnError('ENAMETOOLONG', `invalid name '${name.slice(0, 40)}...': name is too long`, { name });
}

function checkCharacters(text: string, name: string): void {
  for (let i = 0; i < text.length; i++) {
    if (!isValidChar(text.charCodeAt(i))) throw invalid(`invalid character '${text[i]}' in name`, name);
  }
}

/** Byte length, because the limit is on the on-disk (UTF-8) name; only ASCII passes anyway. */
function byteLength(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/**
 * One component of a dataset name, or a snapshot's short name (the part after '@'), as
 * zfs_component_namecheck: non-empty, valid characters, not "." or "..".
 */
export function validateComponent(component: string): void {
  if (byteLength(component) >= DATASET_NAME_LENGTH_BYTES_MAX) throw tooLong(component);
  if (component === '') throw invalid('empty component in name', component);
  checkCharacters(component, component);
  if (component === '.') throw invalid("self reference, '.' is found in name", component);
  if (component === '..') throw invalid("parent reference, '..' is found in name", component);
}

/** The short name given to `snapshot -r` or `rename pool/a@x pool/a@y`: a component, no '@' or '/'. */
export function validateSnapshotName(shortName: string): void {
  if (shortName.includes('@')) throw invalid("multiple '@' delimiters in name", shortName);
  if (shortName.includes('/')) throw invalid("'/' is not allowed in a snapshot name", shortName);
  validateComponent(shortName);
}

/**
 * A full name. With allowSnapshot false (the default) an '@' is refused as zfs refuses it for create,
 * rename of a filesystem and so on; with allowSnapshot 'only' the name must be a snapshot's.
 */
export function validateDatasetName(name: string, options: { allowSnapshot?: boolean | 'only' } = {}): void {
  const allowSnapshot = options.allowSnapshot ?? false;
  const atIndex = name.indexOf('@');
  if (allowSnapshot === false && atIndex >= 0) throw invalid("snapshot delimiter '@' is not expected here", name);
  if (allowSnapshot === 'only' && atIndex < 0) throw invalid("missing '@' delimiter in snapshot name", name);
  if (byteLength(name) >= DATASET_NAME_LENGTH_BYTES_MAX) throw tooLong(name);
  if (name.startsWith('/')) throw invalid('leading slash in name', name);
  if (name === '') throw invalid('empty component in name', name);

  let start = 0;
  let foundDelimiter = false;
  for (;;) {
    let end = start;
    while (end < name.length && name[end] !== '/' && name[end] !== '@') end++;
    if (end === name.length && name[end - 1] === '/') throw invalid('trailing slash in name', name);
    checkCharacters(name.slice(start, end), name);
    // Unlike zfs we also refuse "." and ".." just before '@' ("tank/..@s"): such a dataset cannot exist.
    const component = name.slice(start, end);
    if (component === '.') throw invalid("self reference, '.' is found in name", name);
    if (component === '..') throw invalid("parent reference, '..' is found in name", name);
    if (name[end] === '@') {
      if (foundDelimiter) throw invalid("multiple '@' delimiters in name", name);
      foundDelimiter = true;
    }
    if (start === end) throw invalid("empty component or misplaced '@' delimiter in name", name);
    if (end === name.length) break;
    if (name[end] === '/' && foundDelimiter) throw invalid("'/' is not allowed after the '@' of a snapshot name", name);
    start = end + 1;
  }
  if (nestingDepth(name) >= DATASET_NESTING_DEPTH_MAX) {
    throw invalid(`maximum name nesting depth exceeded (${DATASET_NESTING_DEPTH_MAX - 1} levels)`, name);
  }
}

/** The number of '/' before any '@': 0 for a pool's root dataset. */
export function nestingDepth(name: string): number {
  let depth = 0;
  for (let i = 0; i < name.length && name[i] !== '@'; i++) if (name[i] === '/') depth++;
  return depth;
}

/** Validates (snapshots allowed) and splits a name. */
export function parseDatasetName(name: string): DatasetName {
  validateDatasetName(name, { allowSnapshot: true });
  const atIndex = name.indexOf('@');
  const datasetPart = atIndex < 0 ? name : name.slice(0, atIndex);
  const [pool = '', ...path] = datasetPart.split('/');
  return atIndex < 0 ? { pool, path } : { pool, path, snapshot: name.slice(atIndex + 1) };
}

/** The inverse of parseDatasetName; the result is validated. */
export function formatDatasetName(parts: DatasetName): string {
  const base = [parts.pool, ...parts.path].join('/');
  const name = parts.snapshot === undefined ? base : `${base}@${parts.snapshot}`;
  validateDatasetName(name, { allowSnapshot: true });
  return name;
}

/**
 * The parent: "tank/a" for "tank/a/b", the dataset "tank/a" for the snapshot "tank/a@s", undefined
 * for a pool's root dataset.
 */
export function parentOf(name: string): string | undefined {
  const atIndex = name.indexOf('@');
  if (atIndex >= 0) return name.slice(0, atIndex);
  const slash = name.lastIndexOf('/');
  return slash < 0 ? undefined : name.slice(0, slash);
}

/**
 * True when `ancestor` is a strict ancestor of `name` in the dataset tree: "tank" of "tank/a" and of
 * "tank/a@s"; "tank/a" of "tank/a@s"; never "tank/a" of "tank/ab" and never a name of itself.
 */
export function isAncestor(ancestor: string, name: string): boolean {
  if (ancestor.includes('@') || ancestor.length >= name.length || !name.startsWith(ancestor)) return false;
  const next = name[ancestor.length];
  return next === '/' || next === '@';
}

/** "tank/a" + "b" → "tank/a/b"; each added component is validated, and so is the result. */
export function joinName(parent: string, ...components: string[]): string {
  if (parent.includes('@')) throw invalid('a snapshot cannot have children', parent);
  for (const component of components) validateComponent(component);
  const name = [parent, ...components].join('/');
  validateDatasetName(name);
  return name;
}

/** "tank/a" + "monday" → "tank/a@monday", validated. */
export function snapshotName(dataset: string, shortName: string): string {
  validateSnapshotName(shortName);
  const name = `${dataset}@${shortName}`;
  validateDatasetName(name, { allowSnapshot: 'only' });
  return name;
}
