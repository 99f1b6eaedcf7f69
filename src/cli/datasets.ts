/**
 * The zfs verbs of the CLI (`cairn create|list|get|set|inherit|snapshot|rollback|clone|promote|rename|
 * hold|release|holds|destroy`) and `cairn vol read|write`, with zfs's flags and output. Names are
 * checked here before any request, so a typo costs no daemon round trip; everything else is the
 * daemon's (and the dataset layer's) to decide.
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { validateDatasetName } from '../dataset/names.js';
import { isCairnError } from '../util/errors.js';
import { UsageError, expectPositionals, flagValue } from './args.js';
import type { ParsedArgs } from './args.js';
import {
  GET_FIELDS,
  LIST_DEFAULT_COLUMNS,
  canonicalProperty,
  formatDatasetList,
  formatDestroy,
  formatGet,
  formatHolds,
  sortRows,
} from './dataset-format.js';
import type { SortKey } from './dataset-format.js';
import type { Command } from './main.js';
import { parseSize } from './size.js';

/** Checks a dataset name; kind says whether a snapshot name is required, allowed or refused. */
export function checkName(name: string, kind: 'dataset' | 'snapshot' | 'any', usage: string): string {
  try {
    validateDatasetName(name, { allowSnapshot: kind === 'snapshot' ? 'only' : kind === 'any' });
  } catch (error) {
    if (isCairnError(error)) throw new UsageError(error.message, usage);
    throw error;
  }
  return name;
}

/** -o a=b -o c=d → { a: 'b', c: 'd' }. */
export function parseAssignments(texts: readonly string[], usage: string): Record<string, string> {
  const properties: Record<string, string> = {};
  for (const text of texts) {
    const equals = text.indexOf('=');
    if (equals <= 0) throw new UsageError(`bad property '${text}': expected PROPERTY=VALUE`, usage);
    properties[text.slice(0, equals)] = text.slice(equals + 1);
  }
  return properties;
}

/** "name,used,avail" → canonical property names; a bad one is a usage error. */
export function parsePropertyList(text: string, usage: string, extra: readonly string[] = []): string[] {
  return text.split(',').map((name) => {
    if (extra.includes(name)) return name;
    try {
      return canonicalProperty(name);
    } catch (error) {
      if (isCairnError(error)) throw new UsageError(error.message, usage);
      throw error;
    }
  });
}

function sizeArgument(text: string, what: string, usage: string): number {
  try {
    return parseSize(text);
  } catch {
    throw new UsageError(`bad ${what} '${text}'`, usage);
  }
}

function depthFlag(args: ParsedArgs, usage: string): { depth?: number } {
  const text = flagValue(args, 'd');
  if (text === undefined) return {};
  if (!/^\d+$/.test(text)) throw new UsageError(`bad depth '${text}'`, usage);
  return { depth: Number(text) };
}

function typesFlag(args: ParsedArgs): { types?: string[] } {
  const text = flagValue(args, 't');
  return text === undefined ? {} : { types: text.split(',') };
}

/**
 * zfs rename's shorthand: `rename tank/fs@a b` (or `@b`) renames the snapshot within its dataset.
 * A snapshot can only be renamed to a snapshot of the same dataset.
 */
export function resolveRenameTarget(from: string, to: string, usage: string): string {
  const at = from.indexOf('@');
  if (at < 0) {
    if (to.includes('@')) throw new UsageError(`cannot rename '${from}' to a snapshot name '${to}'`, usage);
    return to;
  }
  const head = from.slice(0, at);
  if (to.startsWith('@')) return `${head}${to}`;
  if (!to.includes('@') && !to.includes('/')) return `${head}@${to}`;
  if (!to.startsWith(`${head}@`)) throw new UsageError('snapshots must be part of same dataset', usage);
  return to;
}


/** zfs hold / release [-r] TAG SNAPSHOT...: the same shape, one verb each. */
function holdCommand(verb: 'hold' | 'release'): Command {
  return {
    words: [verb],
    usage: `cairn ${verb} [-r] TAG SNAPSHOT...`,
    flags: { r: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['tag', 'snapshot name'], Infinity);
      const [tag = '', ...names] = args.positionals;
      for (const name of names) checkName(name, 'snapshot', usage);
      const client = await context.client();
      await client.call(`dataset.${verb}`, {
        tag,
        names,
        ...(args.booleans.has('r') ? { recursive: true } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  };
}

export const DATASET_COMMANDS: Command[] = [
  {
    words: ['create'],
    usage: 'cairn create [-p] [-o PROPERTY=VALUE]... [-V SIZE [-b BLOCKSIZE] [-s]] NAME',
    flags: { p: 'boolean', o: 'list', V: 'value', b: 'value', s: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['dataset name']);
      const name = checkName(args.positionals[0] ?? '', 'dataset', usage);
      const properties = parseAssignments(args.values.get('o') ?? [], usage);
      const volsizeText = flagValue(args, 'V');
      const blockText = flagValue(args, 'b');
      if (volsizeText === undefined && (blockText !== undefined || args.booleans.has('s'))) {
        throw new UsageError("'-s' and '-b' can only be used when creating a volume", usage);
      }
      if (blockText !== undefined) properties['volblocksize'] = String(sizeArgument(blockText, 'block size', usage));
      // Every argument is checked before the daemon is reached (or started): a usage error sends nothing.
      const volsize = volsizeText !== undefined ? { volsizeBytes: sizeArgument(volsizeText, 'volume size', usage) } : {};
      const client = await context.client();
      await client.call('dataset.create', {
        name,
        ...(args.booleans.has('p') ? { parents: true } : {}),
        ...volsize,
        ...(args.booleans.has('s') ? { sparse: true } : {}),
        ...(Object.keys(properties).length > 0 ? { properties } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['list'],
    usage:
      'cairn list [-r|-d DEPTH] [-H] [-p] [-o PROPERTY[,...]] [-s PROPERTY]... [-S PROPERTY]... ' +
      '[-t filesystem|volume|snapshot|all[,...]] [NAME]...',
    flags: { r: 'boolean', d: 'value', H: 'boolean', p: 'boolean', o: 'value', s: 'list', S: 'list', t: 'value' },
    async run(context, args, usage) {
      const columnsText = flagValue(args, 'o');
      const columns = columnsText === undefined ? [...LIST_DEFAULT_COLUMNS] : parsePropertyList(columnsText, usage);
      const sortKeys: SortKey[] = [];
      // getopt order is lost between -s and -S; zfs applies them in the order given, and so do we per flag.
      for (const name of args.values.get('s') ?? []) sortKeys.push({ property: parsePropertyList(name, usage)[0] ?? name, descending: false });
      for (const name of args.values.get('S') ?? []) sortKeys.push({ property: parsePropertyList(name, usage)[0] ?? name, descending: true });
      for (const name of args.positionals) checkName(name, 'any', usage);
      const wanted = [...new Set([...columns, ...sortKeys.map((key) => key.property)])].filter((name) => name !== 'name');
      const depth = depthFlag(args, usage);
      const client = await context.client();
      const rows = await client.call('dataset.list', {
        names: args.positionals,
        ...(args.booleans.has('r') ? { recursive: true } : {}),
        ...depth,
        ...typesFlag(args),
        properties: wanted,
      });
      if (rows.length === 0) {
        if (!args.booleans.has('H')) context.err('no datasets available\n');
        return 0;
      }
      const options = { scripted: args.booleans.has('H'), parsable: args.booleans.has('p') };
      context.out(formatDatasetList(sortRows(rows, sortKeys), columns, options));
      return 0;
    },
  },
  {
    words: ['get'],
    usage:
      'cairn get [-r|-d DEPTH] [-H] [-p] [-o name,property,value,source] [-t TYPE[,...]] all|PROPERTY[,...] [NAME]...',
    flags: { r: 'boolean', d: 'value', H: 'boolean', p: 'boolean', o: 'value', t: 'value' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['property list'], Infinity);
      const [propertyText = '', ...names] = args.positionals;
      const properties = propertyText === 'all' ? 'all' : parsePropertyList(propertyText, usage);
      const fieldsText = flagValue(args, 'o');
      const fields = fieldsText === undefined ? [...GET_FIELDS] : fieldsText.split(',');
      const badField = fields.find((field) => !GET_FIELDS.includes(field));
      if (badField !== undefined) throw new UsageError(`invalid field '${badField}': must be name, property, value or source`, usage);
      for (const name of names) checkName(name, 'any', usage);
      const depth = depthFlag(args, usage);
      const client = await context.client();
      const rows = await client.call('dataset.get', {
        names,
        ...(args.booleans.has('r') ? { recursive: true } : {}),
        ...depth,
        ...typesFlag(args),
        ...(properties === 'all' ? {} : { properties }),
      });
      const options = { scripted: args.booleans.has('H'), parsable: args.booleans.has('p') };
      context.out(formatGet(rows, properties, fields, options));
      return 0;
    },
  },
  {
    words: ['set'],
    usage: 'cairn set PROPERTY=VALUE... NAME...',
    flags: {},
    async run(context, args, usage) {
      const assignments = args.positionals.filter((text) => text.includes('='));
      const names = args.positionals.filter((text) => !text.includes('='));
      if (assignments.length === 0) throw new UsageError('missing property=value argument', usage);
      if (names.length === 0) throw new UsageError('missing dataset name', usage);
      const properties = parseAssignments(assignments, usage);
      for (const name of names) checkName(name, 'any', usage);
      const client = await context.client();
      await client.call('dataset.set', { names, properties, command: context.commandLine });
      return 0;
    },
  },
  {
    words: ['inherit'],
    usage: 'cairn inherit [-r] PROPERTY NAME...',
    flags: { r: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['property', 'dataset name'], Infinity);
      const [property = '', ...names] = args.positionals;
      for (const name of names) checkName(name, 'any', usage);
      const client = await context.client();
      await client.call('dataset.inherit', {
        names,
        property,
        ...(args.booleans.has('r') ? { recursive: true } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['snapshot'],
    usage: 'cairn snapshot [-r] NAME@SNAPSHOT...',
    flags: { r: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['snapshot name'], Infinity);
      for (const name of args.positionals) checkName(name, 'snapshot', usage);
      const client = await context.client();
      await client.call('dataset.snapshot', {
        names: args.positionals,
        ...(args.booleans.has('r') ? { recursive: true } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['rollback'],
    usage: 'cairn rollback [-r] NAME@SNAPSHOT',
    flags: { r: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['snapshot name']);
      const name = checkName(args.positionals[0] ?? '', 'snapshot', usage);
      const client = await context.client();
      await client.call('dataset.rollback', {
        name,
        ...(args.booleans.has('r') ? { recursive: true } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['clone'],
    usage: 'cairn clone [-p] [-o PROPERTY=VALUE]... SNAPSHOT NAME',
    flags: { p: 'boolean', o: 'list' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['snapshot name', 'dataset name']);
      const snapshot = checkName(args.positionals[0] ?? '', 'snapshot', usage);
      const name = checkName(args.positionals[1] ?? '', 'dataset', usage);
      const properties = parseAssignments(args.values.get('o') ?? [], usage);
      const client = await context.client();
      await client.call('dataset.clone', {
        snapshot,
        name,
        ...(args.booleans.has('p') ? { parents: true } : {}),
        ...(Object.keys(properties).length > 0 ? { properties } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['promote'],
    usage: 'cairn promote CLONE',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['clone name']);
      const name = checkName(args.positionals[0] ?? '', 'dataset', usage);
      const client = await context.client();
      await client.call('dataset.promote', { name, command: context.commandLine });
      return 0;
    },
  },
  {
    words: ['rename'],
    usage: 'cairn rename [-p] NAME NEWNAME | cairn rename NAME@SNAPSHOT [NAME@]NEWSNAPSHOT',
    flags: { p: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['dataset name', 'new name']);
      const from = checkName(args.positionals[0] ?? '', 'any', usage);
      const to = checkName(resolveRenameTarget(from, args.positionals[1] ?? '', usage), 'any', usage);
      if (args.booleans.has('p') && from.includes('@')) throw new UsageError('-p is not valid for snapshots', usage);
      const client = await context.client();
      await client.call('dataset.rename', {
        from,
        to,
        ...(args.booleans.has('p') ? { parents: true } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  },
  holdCommand('hold'),
  holdCommand('release'),
  {
    words: ['holds'],
    usage: 'cairn holds [-r] [-H] SNAPSHOT...',
    flags: { r: 'boolean', H: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['snapshot name'], Infinity);
      for (const name of args.positionals) checkName(name, 'snapshot', usage);
      const client = await context.client();
      const holds = await client.call('dataset.holds', {
        names: args.positionals,
        ...(args.booleans.has('r') ? { recursive: true } : {}),
      });
      if (holds.length > 0) context.out(formatHolds(holds, args.booleans.has('H')));
      return 0;
    },
  },
  {
    words: ['destroy'],
    usage: 'cairn destroy [-r] [-R] [-n] [-v] [-p] NAME',
    flags: { r: 'boolean', R: 'boolean', n: 'boolean', v: 'boolean', p: 'boolean', f: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['dataset name']);
      const name = checkName(args.positionals[0] ?? '', 'any', usage);
      if (!name.includes('/') && !name.includes('@')) {
        throw new UsageError(`cannot destroy the pool's root dataset '${name}': use 'cairn pool destroy ${name}'`, usage);
      }
      const dryRun = args.booleans.has('n');
      const parsable = args.booleans.has('p');
      const client = await context.client();
      const result = await client.call('dataset.destroy', {
        name,
        ...(args.booleans.has('r') ? { recursive: true } : {}),
        ...(args.booleans.has('R') ? { dependents: true } : {}),
        ...(dryRun ? { dryRun: true } : {}),
        command: context.commandLine,
      });
      if (args.booleans.has('v') || parsable) context.out(formatDestroy(name, result, { dryRun, parsable }));
      return 0;
    },
  },
  {
    words: ['diff'],
    usage: 'cairn diff [-F] [-H] [-h] SNAPSHOT [SNAPSHOT|FILESYSTEM]',
    flags: { F: 'boolean', H: 'boolean', h: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['snapshot name'], 2);
      const from = checkName(args.positionals[0] ?? '', 'snapshot', usage);
      const toText = args.positionals[1];
      // zfs accepts "@later" for a snapshot of the same dataset.
      const to = toText === undefined ? undefined : toText.startsWith('@') ? `${from.slice(0, from.indexOf('@'))}${toText}` : toText;
      if (to !== undefined) checkName(to, 'any', usage);
      const client = await context.client();
      const chunks = await client.getDiff(from, to, {
        classify: args.booleans.has('F'),
        scripted: args.booleans.has('H'),
        escape: !args.booleans.has('h'),
      });
      await pipeline(Readable.from(chunks), process.stdout, { end: false });
      return 0;
    },
  },
  {
    words: ['vol', 'write'],
    usage: 'cairn vol write VOLUME OFFSET < DATA',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['volume name', 'offset']);
      const name = checkName(args.positionals[0] ?? '', 'dataset', usage);
      const offsetBytes = sizeArgument(args.positionals[1] ?? '', 'offset', usage);
      const client = await context.client();
      await client.putVolume(name, offsetBytes, process.stdin);
      return 0;
    },
  },
  {
    words: ['vol', 'read'],
    usage: 'cairn vol read VOLUME OFFSET [LENGTH] > DATA',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['volume name', 'offset'], 3);
      const name = checkName(args.positionals[0] ?? '', 'any', usage);
      const offsetBytes = sizeArgument(args.positionals[1] ?? '', 'offset', usage);
      const lengthText = args.positionals[2];
      const lengthBytes = lengthText === undefined ? undefined : sizeArgument(lengthText, 'length', usage);
      const client = await context.client();
      const chunks = await client.getVolume(name, offsetBytes, lengthBytes);
      await pipeline(Readable.from(chunks), process.stdout, { end: false });
      return 0;
    },
  },
];
