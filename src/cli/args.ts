/**
 * getopt-style parsing of one command's arguments: short flags that combine ("-Hp"), flags that take a
 * value attached or separate ("-s10G", "-s 10G"), flags anywhere before "--" (as glibc getopt permutes),
 * and "-" alone as a positional (stdin/stdout). Long options ("--listen ADDR", "--listen=ADDR",
 * "--readonly") exist only where a command's spec declares them by a name longer than one letter. A
 * usage error carries the command's usage line; the CLI prints both and exits 2.
 */

export type FlagKind = 'boolean' | 'value' | 'list';

export class UsageError extends Error {
  override name = 'UsageError';
  readonly usage: string;

  constructor(message: string, usage: string) {
    super(message);
    this.usage = usage;
  }
}

export interface ParsedArgs {
  booleans: Set<string>;
  values: Map<string, string[]>;
  positionals: string[];
}

export function parseArgs(argv: readonly string[], spec: Readonly<Record<string, FlagKind>>, usage: string): ParsedArgs {
  const parsed: ParsedArgs = { booleans: new Set(), values: new Map(), positionals: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      parsed.positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg.startsWith('--')) {
      // Long options exist only where a command declares them (a spec key longer than one letter).
      const equals = arg.indexOf('=');
      const name = arg.slice(2, equals < 0 ? undefined : equals);
      const kind = name.length > 1 ? spec[name] : undefined;
      if (kind === undefined) throw new UsageError(`invalid option '${arg}'`, usage);
      if (kind === 'boolean') {
        if (equals >= 0) throw new UsageError(`option '--${name}' takes no value`, usage);
        parsed.booleans.add(name);
        continue;
      }
      let value = equals < 0 ? undefined : arg.slice(equals + 1);
      if (value === undefined) {
        value = argv[i + 1];
        if (value === undefined) throw new UsageError(`option '--${name}' needs a value`, usage);
        i++;
      }
      const list = parsed.values.get(name) ?? [];
      if (kind === 'value' && list.length > 0) throw new UsageError(`option '--${name}' given twice`, usage);
      list.push(value);
      parsed.values.set(name, list);
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      parsed.positionals.push(arg);
      continue;
    }
    for (let j = 1; j < arg.length; j++) {
      const letter = arg[j] ?? '';
      const kind = spec[letter];
      if (kind === undefined) throw new UsageError(`invalid option '-${letter}'`, usage);
      if (kind === 'boolean') {
        parsed.booleans.add(letter);
        continue;
      }
      let value = arg.slice(j + 1);
      if (value === '') {
        const next = argv[i + 1];
        if (next === undefined) throw new UsageError(`option '-${letter}' needs a value`, usage);
        value = next;
        i++;
      }
      const list = parsed.values.get(letter) ?? [];
      if (kind === 'value' && list.length > 0) throw new UsageError(`option '-${letter}' given twice`, usage);
      list.push(value);
      parsed.values.set(letter, list);
      break;
    }
  }
  return parsed;
}

/** The single value of a 'value' flag, or undefined. */
export function flagValue(parsed: ParsedArgs, letter: string): string | undefined {
  return parsed.values.get(letter)?.[0];
}

/** Checks the number of positionals; names the first missing one ("missing pool name"). */
export function expectPositionals(
  parsed: ParsedArgs,
  usage: string,
  names: readonly string[],
  maxCount: number = names.length,
): void {
  const count = parsed.positionals.length;
  if (count < names.length) throw new UsageError(`missing ${names[count] ?? 'argument'}`, usage);
  if (count > maxCount) throw new UsageError(`too many arguments ('${parsed.positionals[maxCount] ?? ''}')`, usage);
}
