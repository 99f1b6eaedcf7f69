/**
 * The commands that serve datasets through the operating system, as zfs names them: `cairn mount`
 * (zfs mount: no arguments lists, -a mounts every filesystem that should be, -o ro), `cairn unmount`
 * / `umount` (by dataset or path, -f, -a), and `cairn nbd export|unexport|list` for volumes. The daemon
 * does the serving; these only ask it and print what it answers.
 */
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { UsageError, expectPositionals, flagValue } from './args.js';
import type { ParsedArgs } from './args.js';
import { layout } from './dataset-format.js';
import type { CliContext, Command } from './main.js';
import { formatSize } from './size.js';

/** -o ro,rw: the only temporary mount options Cairn mounts take. */
function readonlyOption(args: ParsedArgs, usage: string): boolean | undefined {
  let readonly: boolean | undefined;
  for (const list of args.values.get('o') ?? []) {
    for (const option of list.split(',')) {
      if (option === 'ro') readonly = true;
      else if (option === 'rw') readonly = false;
      else if (option !== '') throw new UsageError(`unsupported mount option '${option}' (ro or rw)`, usage);
    }
  }
  return readonly;
}

/** A word that names a local path rather than a dataset. */
function looksLikePath(text: string): boolean {
  return text.startsWith('/') || text.startsWith('./') || text.startsWith('../') || text === '.' || text === '..';
}

async function mountCommand(context: CliContext, args: ParsedArgs, usage: string): Promise<number> {
  const readonly = readonlyOption(args, usage);
  const client = await context.client();
  if (args.booleans.has('a')) {
    expectPositionals(args, usage, [], 0);
    const { errors } = await client.call('mount.all', { command: context.commandLine });
    for (const error of errors) context.err(`cairn: ${error.message}\n`);
    return errors.length > 0 ? 1 : 0;
  }
  if (args.positionals.length === 0) {
    const rows = await client.call('mount.list', {});
    if (rows.length > 0) context.out(layout(rows.map((row) => [row.dataset, row.mountpoint]), [false, false]));
    return 0;
  }
  expectPositionals(args, usage, ['dataset'], 2);
  const [dataset = '', pathText] = args.positionals;
  await client.call('mount.mount', {
    dataset,
    ...(pathText !== undefined ? { mountpoint: resolvePath(context.cwd, pathText) } : {}),
    ...(readonly !== undefined ? { readonly } : {}),
    command: context.commandLine,
  });
  return 0;
}

async function unmountCommand(context: CliContext, args: ParsedArgs, usage: string): Promise<number> {
  const force = args.booleans.has('f');
  const client = await context.client();
  if (args.booleans.has('a')) {
    expectPositionals(args, usage, [], 0);
    await client.call('mount.unmount', { all: true, ...(force ? { force } : {}), command: context.commandLine });
    return 0;
  }
  expectPositionals(args, usage, ['dataset or mountpoint']);
  const target = args.positionals[0] ?? '';
  await client.call('mount.unmount', {
    ...(looksLikePath(target) ? { mountpoint: resolvePath(context.cwd, target) } : { dataset: target }),
    ...(force ? { force } : {}),
    command: context.commandLine,
  });
  return 0;
}

/** HOST:PORT stays; a socket path is made absolute (the daemon runs in another directory). */
function listenAddress(args: ParsedArgs, context: CliContext): { listen?: string } {
  const text = flagValue(args, 'listen');
  if (text === undefined) return {};
  return { listen: text.includes('/') && !isAbsolute(text) ? resolvePath(context.cwd, text) : text };
}

const UNMOUNT_USAGE = 'cairn unmount [-f] -a | DATASET | PATH';

export const SERVE_COMMANDS: Command[] = [
  {
    words: ['mount'],
    usage: 'cairn mount [-o ro|rw] DATASET [PATH] | cairn mount -a | cairn mount   (lists mounts)',
    flags: { o: 'list', a: 'boolean' },
    run: mountCommand,
  },
  { words: ['unmount'], usage: UNMOUNT_USAGE, flags: { f: 'boolean', a: 'boolean' }, run: unmountCommand },
  { words: ['umount'], usage: UNMOUNT_USAGE.replace('unmount', 'umount'), flags: { f: 'boolean', a: 'boolean' }, run: unmountCommand },
  {
    words: ['nbd', 'export'],
    usage: 'cairn nbd export VOLUME [--listen HOST:PORT|/SOCKET] [--name NAME] [--readonly]',
    flags: { listen: 'value', name: 'value', readonly: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['volume']);
      const client = await context.client();
      const name = flagValue(args, 'name');
      const row = await client.call('nbd.export', {
        dataset: args.positionals[0] ?? '',
        ...listenAddress(args, context),
        ...(name !== undefined ? { name } : {}),
        ...(args.booleans.has('readonly') ? { readonly: true } : {}),
        command: context.commandLine,
      });
      context.err(`exporting ${row.dataset} as '${row.name}' on ${row.listen}${row.readonly ? ' (read-only)' : ''}\n`);
      return 0;
    },
  },
  {
    words: ['nbd', 'unexport'],
    usage: 'cairn nbd unexport NAME [--listen HOST:PORT|/SOCKET]',
    flags: { listen: 'value' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['export name']);
      const client = await context.client();
      await client.call('nbd.unexport', { name: args.positionals[0] ?? '', ...listenAddress(args, context), command: context.commandLine });
      return 0;
    },
  },
  {
    words: ['nbd', 'list'],
    usage: 'cairn nbd list [-H] [-p]',
    flags: { H: 'boolean', p: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, []);
      const client = await context.client();
      const rows = await client.call('nbd.list', {});
      const parsable = args.booleans.has('p');
      const body = rows.map((row) => [
        row.name,
        row.dataset,
        row.listen,
        parsable ? String(row.sizeBytes) : formatSize(row.sizeBytes),
        row.readonly ? 'on' : 'off',
      ]);
      if (args.booleans.has('H')) context.out(body.map((cells) => `${cells.join('\t')}\n`).join(''));
      else if (rows.length === 0) context.err('no NBD exports\n');
      else context.out(layout([['NAME', 'DATASET', 'LISTEN', 'SIZE', 'RO'], ...body], [false, false, false, true, false]));
      return 0;
    },
  },
];

