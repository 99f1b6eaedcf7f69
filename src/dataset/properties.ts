/**
 * The dataset property table (OpenZFS zfs_prop.c): one declarative row per property drives validation
 * of `set`/`create -o`, the sources `get` prints, the column headers of `list -o`, and help text.
 *
 * Values are held canonically: sizes and counts as numbers of bytes/units, on/off and enum values as
 * their lowercase word, copies as 1..3, user properties as strings. A row's parse() turns what a user
 * typed into that form (or throws EINVAL with a zfs-like message); format() turns it back, as a human
 * reads it ("10G", "none", "1.50x") or, parsable (`-p`), exactly ("10737418240", "0", "1.50").
 * parse(format(v, true)) === v for every settable property, so values can be stored as text too.
 *
 * Inheritance, as `zfs get` shows it: a dataset's value is its local one, else its received one, else
 * the nearest ancestor's (local or received), else the default; read-only statistics have source '-'.
 * An inherited mountpoint gets the path below the ancestor appended; the default mountpoint is
 * "/<dataset name>". User properties ("module:property") inherit like any other and have no default.
 *
 * Pure: no I/O. Size parsing and printing live here because cli/ is above this layer; src/cli/size.ts
 * should later import these (formatSize/parseSize here match zfs_nicebytes/zfs_nicestrtonum).
 */
import { CairnError } from '../util/errors.js';

export type DatasetType = 'filesystem' | 'volume' | 'snapshot';
export type PropertyValue = number | string;
/** number: a plain count; size: bytes; onoff: 'on'|'off'; enum: one word of a list; index: one of a few numbers. */
export type PropertyKind = 'number' | 'size' | 'onoff' | 'enum' | 'string' | 'index';
export type PropertySource = 'local' | 'default' | 'received' | '-' | `inherited from ${string}`;

export interface PropertyDefinition {
  readonly name: string;
  readonly kind: PropertyKind;
  /** Undefined for read-only statistics and for properties whose default depends on the dataset. */
  readonly defaultValue: PropertyValue | undefined;
  readonly inheritable: boolean;
  readonly readonly: boolean;
  /** Settable only by create (volblocksize). */
  readonly createOnly: boolean;
  readonly appliesTo: readonly DatasetType[];
  /** The `list -o` column header zfs prints. */
  readonly column: string;
  /** Short names zfs also accepts ("avail", "refer", "compress"). */
  readonly aliases: readonly string[];
  /** What the value may be, for help and error text: "on | off", "<size> | none". */
  readonly valuesHelp: string;
  /** User text → canonical value; throws CairnError EINVAL. */
  parse(text: string): PropertyValue;
  /** Canonical value → text; parsable = `-p` (exact numbers). */
  format(value: PropertyValue, parsable: boolean): string;
}

export interface ResolvedProperty {
  name: string;
  value: PropertyValue;
  source: PropertySource;
}

/** One dataset's own property maps, as stored; a chain runs from a dataset up to its pool's root. */
export interface PropertyLayer {
  /** Full name of the dataset (or snapshot) holding these maps. */
  name: string;
  local: Readonly<Record<string, PropertyValue>>;
  received?: Readonly<Record<string, PropertyValue>>;
}

const SIZE_SUFFIXES = 'BKMGTPE';
const USER_PROPERTY_NAME_LENGTH_MAX = 255;
const USER_PROPERTY_VALUE_LENGTH_BYTES_MAX = 8192;
const ALL_TYPES: readonly DatasetType[] = ['filesystem', 'volume', 'snapshot'];
const FS_AND_VOLUME: readonly DatasetType[] = ['filesystem', 'volume'];
const FILESYSTEM: readonly DatasetType[] = ['filesystem'];
const VOLUME: readonly DatasetType[] = ['volume'];
const SNAPSHOT: readonly DatasetType[] = ['snapshot'];

function einval(message: string, data: Record<string, unknown> = {}): CairnError {
  return new CairnError('EINVAL', message, data);
}

// ---- sizes and numbers ------------------------------------------------------------------------------

/**
 * zfs_nicestrtonum: "10G", "1.5T", "512", "4KiB", "1kb" → bytes. Powers of 1024; a fraction is allowed
 * only with a suffix and is truncated to a whole byte.
 */
export function parseSize(text: string): number {
  const match = /^(\d+(?:\.\d*)?|\.\d+)([bkmgtpe]?)(?:i?b)?$/i.exec(text.trim());
  if (match === null || text.trim() === '') throw einval(`bad numeric value '${text}'`);
  const digits = match[1] ?? '';
  const suffix = (match[2] ?? '').toUpperCase();
  const shift = suffix === '' ? 0 : SIZE_SUFFIXES.indexOf(suffix) * 10;
  if (shift === 0 && digits.includes('.')) throw einval(`bad numeric value '${text}': fractional bytes`);
  const bytes = Math.floor(Number(digits) * 2 ** shift);
  if (!Number.isSafeInteger(bytes)) throw einval(`numeric value '${text}' is too large`);
  return bytes;
}

/** zfs_nicebytes: "512B", "128K", "9.50G" — the most decimals (2, 1, 0) that fit in five characters. */
export function formatSize(bytes: number): string {
  let index = 0;
  let scaled = bytes;
  while (scaled >= 1024 && index < SIZE_SUFFIXES.length - 1) {
    scaled /= 1024;
    index++;
  }
  const unit = SIZE_SUFFIXES[index] ?? 'E';
  if (index === 0) return `${bytes}B`;
  if (bytes % 2 ** (10 * index) === 0) return `${scaled}${unit}`;
  let text = '';
  for (let decimals = 2; decimals >= 0; decimals--) {
    text = `${scaled.toFixed(decimals)}${unit}`;
    if (text.length <= 5) break;
  }
  return text;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && Number.isSafeInteger(n) && 2 ** Math.round(Math.log2(n)) === n;
}

// ---- row builders -------------------------------------------------------------------------------------

interface RowOptions {
  defaultValue?: PropertyValue;
  inheritable?: boolean;
  createOnly?: boolean;
  aliases?: readonly string[];
}

function row(
  name: string,
  kind: PropertyKind,
  column: string,
  appliesTo: readonly DatasetType[],
  valuesHelp: string,
  parse: (text: string) => PropertyValue,
  format: (value: PropertyValue, parsable: boolean) => string,
  options: RowOptions & { readonly?: boolean } = {},
): PropertyDefinition {
  return {
    name,
    kind,
    column,
    appliesTo,
    valuesHelp,
    parse,
    format,
    defaultValue: options.defaultValue,
    inheritable: options.inheritable ?? false,
    readonly: options.readonly ?? false,
    createOnly: options.createOnly ?? false,
    aliases: options.aliases ?? [],
  };
}

function refuseParse(name: string): (text: string) => PropertyValue {
  return () => {
    throw einval(`property '${name}' is read-only`);
  };
}

const formatSizeValue = (value: PropertyValue, parsable: boolean): string =>
  parsable ? String(value) : formatSize(Number(value));
const formatPlain = (value: PropertyValue): string => String(value);
const formatDash = (value: PropertyValue): string => (value === '' ? '-' : String(value));

/** A read-only size statistic: used, available, ... */
function statSize(name: string, column: string, appliesTo: readonly DatasetType[], aliases: readonly string[] = []): PropertyDefinition {
  return row(name, 'size', column, appliesTo, '<size>', refuseParse(name), formatSizeValue, { readonly: true, aliases });
}

function statOther(
  name: string,
  kind: PropertyKind,
  column: string,
  appliesTo: readonly DatasetType[],
  format: (value: PropertyValue, parsable: boolean) => string,
): PropertyDefinition {
  return row(name, kind, column, appliesTo, '-', refuseParse(name), format, { readonly: true });
}

function choice(
  name: string,
  kind: 'onoff' | 'enum',
  column: string,
  appliesTo: readonly DatasetType[],
  values: readonly string[],
  options: RowOptions,
  help = values.join(' | '),
): PropertyDefinition {
  const allowed = new Set(values);
  const parse = (text: string): PropertyValue => {
    if (!allowed.has(text)) throw einval(`'${name}' must be one of '${help}'`, { property: name, value: text });
    return text;
  };
  return row(name, kind, column, appliesTo, help, parse, formatPlain, options);
}

/** A size that may be 'none' (0): quota, refquota, reservation, refreservation. */
function optionalSize(name: string, column: string, appliesTo: readonly DatasetType[], aliases: readonly string[] = []): PropertyDefinition {
  const parse = (text: string): PropertyValue => (text === 'none' ? 0 : parseSize(text));
  const format = (value: PropertyValue, parsable: boolean): string =>
    parsable ? String(value) : value === 0 ? 'none' : formatSize(Number(value));
  return row(name, 'size', column, appliesTo, '<size> | none', parse, format, { defaultValue: 0, aliases });
}

/** A block size: a power of two between the bounds. */
function blockSize(
  name: string,
  column: string,
  appliesTo: readonly DatasetType[],
  minBytes: number,
  maxBytes: number,
  options: RowOptions,
): PropertyDefinition {
  const parse = (text: string): PropertyValue => {
    const bytes = parseSize(text);
    if (!isPowerOfTwo(bytes) || bytes < minBytes || bytes > maxBytes) {
      throw einval(`'${name}' must be a power of 2 from ${formatSize(minBytes)} to ${formatSize(maxBytes)}`, {
        property: name,
        value: text,
      });
    }
    return bytes;
  };
  return row(name, 'size', column, appliesTo, `512 to ${formatSize(maxBytes)}, power of 2`, parse, formatSizeValue, options);
}

/** "Mon Jan 15 10:00 2024" as zfs prints creation (ctime without seconds, local time). */
export function formatCreation(seconds: number): string {
  const date = new Date(seconds * 1000);
  const day = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'][date.getDay()] ?? '';
  const month = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][date.getMonth()] ?? '';
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${day} ${month} ${String(date.getDate()).padStart(2, ' ')} ${two(date.getHours())}:${two(date.getMinutes())} ${date.getFullYear()}`;
}

const COMPRESSION_VALUES: readonly string[] = [
  'off',
  'on',
  'lz4',
  'zstd',
  ...Array.from({ length: 19 }, (_, i) => `zstd-${i + 1}`),
];

function parseMountpoint(text: string): PropertyValue {
  if (text === 'none' || text === 'legacy') return text;
  if (!text.startsWith('/')) {
    throw einval(`'mountpoint' must be an absolute path, 'none', or 'legacy'`, { property: 'mountpoint', value: text });
  }
  const components = text.split('/').filter((c) => c !== '');
  for (const component of components) {
    if (Buffer.byteLength(component) >= 256) throw einval(`component of '${text.slice(0, 40)}...' is too long`);
  }
  // Extra and trailing slashes are dropped, as the mkdir of the mountpoint would drop them.
  return `/${components.join('/')}`;
}

/** The table, in the order `get all` prints (zfs's order for the properties it has). */
export const PROPERTY_TABLE: readonly PropertyDefinition[] = [
  statOther('type', 'string', 'TYPE', ALL_TYPES, formatPlain),
  statOther('creation', 'number', 'CREATION', ALL_TYPES, (v, parsable) => (parsable ? String(v) : formatCreation(Number(v)))),
  statSize('used', 'USED', ALL_TYPES),
  statSize('available', 'AVAIL', FS_AND_VOLUME, ['avail']),
  statSize('referenced', 'REFER', ALL_TYPES, ['refer']),
  statOther('compressratio', 'number', 'RATIO', ALL_TYPES, (v, parsable) =>
    parsable ? Number(v).toFixed(2) : `${Number(v).toFixed(2)}x`,
  ),
  optionalSize('quota', 'QUOTA', FILESYSTEM),
  optionalSize('reservation', 'RESERV', FS_AND_VOLUME, ['reserv']),
  blockSize('recordsize', 'RECSIZE', FILESYSTEM, 512, 1 << 20, { defaultValue: 128 * 1024, inheritable: true, aliases: ['recsize'] }),
  row('volsize', 'size', 'VOLSIZE', VOLUME, '<size>', parseVolsize, formatSizeValue),
  blockSize('volblocksize', 'VOLBLOCK', VOLUME, 512, 128 * 1024, { defaultValue: 16 * 1024, createOnly: true, aliases: ['volblock'] }),
  row('mountpoint', 'string', 'MOUNTPOINT', FILESYSTEM, '<path> | legacy | none', parseMountpoint, formatPlain, {
    inheritable: true,
  }),
  choice('checksum', 'enum', 'CHECKSUM', FS_AND_VOLUME, ['on', 'fletcher4', 'sha256', 'xxh128'], {
    defaultValue: 'on',
    inheritable: true,
  }),
  choice('compression', 'enum', 'COMPRESS', FS_AND_VOLUME, COMPRESSION_VALUES, {
    defaultValue: 'on',
    inheritable: true,
    aliases: ['compress'],
  }, 'on | off | lz4 | zstd | zstd-1 .. zstd-19'),
  choice('atime', 'onoff', 'ATIME', FILESYSTEM, ['on', 'off'], { defaultValue: 'on', inheritable: true }),
  row('copies', 'index', 'COPIES', FS_AND_VOLUME, '1 | 2 | 3', parseCopies, formatPlain, { defaultValue: 1, inheritable: true }),
  choice('readonly', 'onoff', 'RDONLY', FS_AND_VOLUME, ['on', 'off'], { defaultValue: 'off', inheritable: true, aliases: ['rdonly'] }),
  choice('snapdir', 'enum', 'SNAPDIR', FILESYSTEM, ['hidden', 'visible'], { defaultValue: 'hidden', inheritable: true }),
  choice('canmount', 'enum', 'CANMOUNT', FILESYSTEM, ['on', 'off', 'noauto'], { defaultValue: 'on' }),
  choice('sync', 'enum', 'SYNC', FS_AND_VOLUME, ['standard', 'always', 'disabled'], { defaultValue: 'standard', inheritable: true }),
  statOther('createtxg', 'number', 'CREATETXG', ALL_TYPES, formatPlain),
  statOther('guid', 'number', 'GUID', ALL_TYPES, formatPlain),
  statOther('origin', 'string', 'ORIGIN', FS_AND_VOLUME, formatDash),
  statOther('clones', 'string', 'CLONES', SNAPSHOT, formatPlain),
  statSize('usedbysnapshots', 'USEDSNAP', FS_AND_VOLUME),
  statSize('usedbydataset', 'USEDDS', FS_AND_VOLUME),
  statSize('usedbychildren', 'USEDCHILD', FS_AND_VOLUME),
  statSize('usedbyrefreservation', 'USEDREFRESERV', FS_AND_VOLUME),
  optionalSize('refquota', 'REFQUOTA', FILESYSTEM),
  optionalSize('refreservation', 'REFRESERV', FS_AND_VOLUME, ['refreserv']),
  statOther('refcompressratio', 'number', 'REFRATIO', ALL_TYPES, (v, parsable) =>
    parsable ? Number(v).toFixed(2) : `${Number(v).toFixed(2)}x`,
  ),
  statSize('written', 'WRITTEN', ALL_TYPES),
  statSize('logicalused', 'LUSED', ALL_TYPES),
  statSize('logicalreferenced', 'LREFER', ALL_TYPES, ['lrefer']),
  statOther('name', 'string', 'NAME', ALL_TYPES, formatPlain),
];

function parseCopies(text: string): PropertyValue {
  if (text !== '1' && text !== '2' && text !== '3') throw einval(`'copies' must be 1, 2 or 3`, { property: 'copies', value: text });
  return Number(text);
}

function parseVolsize(text: string): PropertyValue {
  const bytes = parseSize(text);
  if (bytes === 0) throw einval(`'volsize' cannot be zero`, { property: 'volsize', value: text });
  return bytes;
}

const BY_NAME = new Map<string, PropertyDefinition>();
for (const definition of PROPERTY_TABLE) {
  BY_NAME.set(definition.name, definition);
  for (const alias of definition.aliases) BY_NAME.set(alias, definition);
}

// ---- user properties ------------------------------------------------------------------------------------

/** zfs_prop_user: a colon, and only lowercase letters, digits and `- _ . :`; shorter than 256. */
export function isUserPropertyName(name: string): boolean {
  return name.length > 0 && name.length <= USER_PROPERTY_NAME_LENGTH_MAX && name.includes(':') && /^[a-z0-9_.:-]+$/.test(name);
}

function userPropertyDefinition(name: string): PropertyDefinition {
  const parse = (text: string): PropertyValue => {
    if (Buffer.byteLength(text) > USER_PROPERTY_VALUE_LENGTH_BYTES_MAX) {
      throw einval(`property value of '${name}' is too long (more than ${USER_PROPERTY_VALUE_LENGTH_BYTES_MAX} bytes)`);
    }
    return text;
  };
  return row(name, 'string', name.toUpperCase(), ALL_TYPES, '<string>', parse, formatPlain, { inheritable: true });
}

// ---- lookups and validation --------------------------------------------------------------------------

/** The row for a native property (by name or alias) or a user property; EINVAL for anything else. */
export function propertyDefinition(name: string): PropertyDefinition {
  const native = BY_NAME.get(name);
  if (native !== undefined) return native;
  if (isUserPropertyName(name)) return userPropertyDefinition(name);
  if (name.includes(':')) {
    throw einval(`invalid user property name '${name}': only lowercase letters, digits and '-_.:' are allowed`);
  }
  throw einval(`invalid property '${name}'`, { property: name });
}

export function isNativeProperty(name: string): boolean {
  return BY_NAME.has(name);
}

function typePlural(type: DatasetType): string {
  return type === 'filesystem' ? 'filesystems' : type === 'volume' ? 'volumes' : 'snapshots';
}

/**
 * Validates `name=text` for `set` (creating false) or `create -o` (creating true) on a dataset of
 * the given type, and returns the canonical name and value.
 */
export function parsePropertyValue(
  name: string,
  text: string,
  target: { type: DatasetType; creating?: boolean },
): { name: string; value: PropertyValue } {
  const definition = propertyDefinition(name);
  if (definition.readonly) throw einval(`property '${definition.name}' is read-only`, { property: definition.name });
  if (!definition.appliesTo.includes(target.type)) {
    throw einval(`property '${definition.name}' does not apply to ${typePlural(target.type)}`, { property: definition.name });
  }
  if (definition.createOnly && target.creating !== true) {
    throw einval(`property '${definition.name}' can only be set at creation time`, { property: definition.name });
  }
  return { name: definition.name, value: definition.parse(text) };
}

/** Refuses `inherit` of what cannot be inherited (zfs: "'quota' property cannot be inherited"). */
export function checkInheritable(name: string, type: DatasetType): string {
  const definition = propertyDefinition(name);
  if (definition.readonly) throw einval(`property '${definition.name}' is read-only`, { property: definition.name });
  if (!definition.appliesTo.includes(type)) {
    throw einval(`property '${definition.name}' does not apply to ${typePlural(type)}`, { property: definition.name });
  }
  if (!definition.inheritable) throw einval(`'${definition.name}' property cannot be inherited`, { property: definition.name });
  return definition.name;
}

/** A volume's size must be a whole number of its blocks (zfs: "volsize must be a multiple of volume block size"). */
export function validateVolsize(volsizeBytes: number, volblocksizeBytes: number): void {
  if (volsizeBytes <= 0) throw einval(`'volsize' cannot be zero`);
  if (volsizeBytes % volblocksizeBytes !== 0) {
    throw einval(`'volsize' must be a multiple of volume block size (${formatSize(volblocksizeBytes)})`, {
      volsizeBytes,
      volblocksizeBytes,
    });
  }
}

export function formatPropertyValue(name: string, value: PropertyValue, parsable = false): string {
  return propertyDefinition(name).format(value, parsable);
}

/** The `list -o` header of a property: "AVAIL" for available, the upper-cased name for user properties. */
export function columnHeader(name: string): string {
  return propertyDefinition(name).column;
}

// ---- resolution (zfs get) ---------------------------------------------------------------------------

function ownValue(layer: PropertyLayer, name: string): { value: PropertyValue; received: boolean } | undefined {
  const local = Object.hasOwn(layer.local, name) ? layer.local[name] : undefined;
  if (local !== undefined) return { value: local, received: false };
  const received = layer.received !== undefined && Object.hasOwn(layer.received, name) ? layer.received[name] : undefined;
  return received === undefined ? undefined : { value: received, received: true };
}

/** "/export" inherited by tank/a/b from tank/a → "/export/b"; none and legacy pass unchanged. */
function suffixMountpoint(value: PropertyValue, ancestor: string, dataset: string): PropertyValue {
  if (value === 'none' || value === 'legacy' || typeof value !== 'string') return value;
  const relative = dataset.slice(ancestor.length + 1);
  return value === '/' ? `/${relative}` : `${value}/${relative}`;
}

function resolveOne(definition: PropertyDefinition, chain: readonly PropertyLayer[]): ResolvedProperty | undefined {
  const self = chain[0];
  if (self === undefined) return undefined;
  const own = ownValue(self, definition.name);
  if (own !== undefined) return { name: definition.name, value: own.value, source: own.received ? 'received' : 'local' };
  if (definition.inheritable) {
    // A snapshot's chain starts with the snapshot, then its dataset: inheritance skips the '@'.
    const datasetName = self.name.includes('@') ? self.name.slice(0, self.name.indexOf('@')) : self.name;
    for (let i = 1; i < chain.length; i++) {
      const ancestor = chain[i];
      if (ancestor === undefined) continue;
      const found = ownValue(ancestor, definition.name);
      if (found === undefined) continue;
      const value =
        definition.name === 'mountpoint' && ancestor.name !== datasetName
          ? suffixMountpoint(found.value, ancestor.name, datasetName)
          : found.value;
      return { name: definition.name, value, source: `inherited from ${ancestor.name}` };
    }
  }
  if (definition.name === 'mountpoint') return { name: 'mountpoint', value: `/${self.name}`, source: 'default' };
  if (definition.defaultValue === undefined) return undefined;
  return { name: definition.name, value: definition.defaultValue, source: 'default' };
}

/**
 * Every property of the dataset chain[0] as `zfs get all` shows it: table order, then user properties
 * (set on it or inherited) sorted by name. `stats` holds the read-only figures the dataset layer
 * computed (used, available, guid, ...); they appear with source '-' when they apply to the type.
 * chain: chain[0] the dataset (or snapshot), then its parent (a snapshot's dataset), up to the pool root.
 */
export function resolveProperties(
  chain: readonly PropertyLayer[],
  options: { type: DatasetType; stats?: Readonly<Record<string, PropertyValue>> },
): Map<string, ResolvedProperty> {
  const self = chain[0];
  if (self === undefined) throw einval('no dataset to resolve properties for');
  const stats: Record<string, PropertyValue> = { ...options.stats, name: self.name, type: options.type };
  const out = new Map<string, ResolvedProperty>();
  for (const definition of PROPERTY_TABLE) {
    if (!definition.appliesTo.includes(options.type)) continue;
    if (definition.readonly) {
      const value = Object.hasOwn(stats, definition.name) ? stats[definition.name] : undefined;
      if (value !== undefined) out.set(definition.name, { name: definition.name, value, source: '-' });
      continue;
    }
    const resolved = resolveOne(definition, chain);
    if (resolved !== undefined) out.set(definition.name, resolved);
  }
  const userNames = new Set<string>();
  for (const layer of chain) {
    for (const name of Object.keys(layer.local)) if (isUserPropertyName(name)) userNames.add(name);
    for (const name of Object.keys(layer.received ?? {})) if (isUserPropertyName(name)) userNames.add(name);
  }
  for (const name of [...userNames].sort()) {
    const resolved = resolveOne(userPropertyDefinition(name), chain);
    if (resolved !== undefined) out.set(name, resolved);
  }
  return out;
}

/**
 * One property, as `zfs get PROP`: a user property set nowhere is '-' with source '-', as zfs prints it.
 * EINVAL for unknown names; a property that does not apply to the type resolves to undefined.
 */
export function resolveProperty(
  name: string,
  chain: readonly PropertyLayer[],
  options: { type: DatasetType; stats?: Readonly<Record<string, PropertyValue>> },
): ResolvedProperty | undefined {
  const definition = propertyDefinition(name);
  const all = resolveProperties(chain, options);
  const found = all.get(definition.name);
  if (found !== undefined) return found;
  if (!isNativeProperty(name)) return { name, value: '-', source: '-' };
  return undefined;
}
