import { createRequire } from 'node:module';
import { isSessionId, MAX_SESSION_TIMEOUT_MS } from '@sessile/core';
import { Command, CommanderError, Option } from 'commander';
import { STORE_SCHEMES } from './addresses.js';
import { AES_KEYS_VARIABLE } from './codec.js';
import { copy } from './commands/copy.js';
import { importSessions } from './commands/import.js';
import { ls, show, stats } from './commands/inspect.js';
import { sweep } from './commands/sweep.js';
import { EXIT, type ExitCode, usageError } from './exit-codes.js';
import { parseWholeNumber } from './numbers.js';
import { type CommonOptions, maskId, printFailureJson, reportError } from './output.js';
import { PEER_ADDRESSES } from './peers/index.js';

const EXIT_CODES_HELP = `
Store addresses:
  ${STORE_SCHEMES.split(', ').join('\n  ')}

Peer addresses (import reads their data directly; the peer package need not be installed):
  ${PEER_ADDRESSES.split(', ').join('\n  ')}

Environment:
  ${AES_KEYS_VARIABLE}   the app's aesGcmCodec keys, base64, comma separated, newest first

Exit codes:
  0    done
  1    a store or peer failed (I/O, corrupt or foreign data, a table that is not the peer's)
  2    bad arguments (unknown command or option, malformed address or id)
  3    a store package or driver is not installed (the message names it)
  4    show: no live session has that id
  5    finished, but some records were unreadable (corrupt, or over --max-record-bytes) and
       skipped, or sweep's --budget ran out
  130  copy, import or sweep interrupted by SIGINT or SIGTERM; what was written stays, and
       the same command resumes (stats, ls and show end by the signal itself)
`;

const parseMaxRecordBytes = (value: string) =>
  parseWholeNumber(value, '--max-record-bytes', 'bytes', 1);
const parseConcurrency = (value: string) =>
  parseWholeNumber(value, '--concurrency', 'records', 1, 1024);

const { version } = createRequire(import.meta.url)('../package.json') as { version: string };

/** The options every command takes, before its name (`sessile --json stats`) or after it. */
const withCommonOptions = (command: Command) =>
  refuseAmbiguousValues(
    command
      .version(version)
      .addOption(new Option('--json', 'print one JSON document for scripts'))
      .addOption(
        new Option(
          '--max-record-bytes <n>',
          "largest record the stores accept and return (default: each store's own, 1048576)",
        ).argParser(parseMaxRecordBytes),
      ),
  );

/** The common options that take a value, whose value is not a command's name. */
const VALUE_OPTIONS = ['--max-record-bytes'];

/**
 * Adds the common options given before the command's name to the command's own: `--json` there
 * counts as after it, and a `--max-record-bytes` given in both places with different values is
 * refused.
 */
function withGlobalOptions(options: CommonOptions, global: CommonOptions): void {
  if (global.json) options.json = true;
  if (global.maxRecordBytes === undefined) return;
  if (options.maxRecordBytes !== undefined && options.maxRecordBytes !== global.maxRecordBytes) {
    throw usageError(
      `--max-record-bytes is given twice ('${global.maxRecordBytes}', '${options.maxRecordBytes}'); give it once`,
    );
  }
  options.maxRecordBytes = global.maxRecordBytes;
}

/**
 * Refuses a value option given twice with different values, which would leave the store a copy
 * reads or writes to the order of the words, and an option that takes the next option as its
 * value: `--ledger --dry-run` would run for real with a ledger named `--dry-run`.
 */
function refuseAmbiguousValues(command: Command): Command {
  const flags = new Set(command.options.flatMap((option) => [option.long, option.short]));
  for (const option of command.options) {
    if (!option.required && !option.optional) continue;
    let given: string | undefined;
    command.on(`option:${option.name()}`, (value: string) => {
      const flag = value.split('=')[0];
      if (flags.has(flag) || flag === '--help' || flag === '-h') {
        throw usageError(`option '${option.flags}' argument missing (${value} is an option)`);
      }
      if (given !== undefined && given !== value) {
        throw usageError(`${option.long} is given twice ('${given}', '${value}'); give it once`);
      }
      given = value;
    });
  }
  return command;
}

/**
 * The value of a required option. Checked here, after commander has refused unknown options,
 * where its own check came first: a misspelt `--form` was reported as `--from` not given.
 */
function requiredValue(value: unknown, flags: string): string {
  if (value === undefined) throw usageError(`required option '${flags}' not specified`);
  return String(value);
}

/** Whether `argv` asks for JSON; what follows `--` is operands, never options. */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--json');
}

/** The `sessile` program. `run` resolves to the exit code and never exits the process itself. */
export function buildProgram(setExitCode: (code: ExitCode) => void): Command {
  let json = false;
  const action =
    <A extends unknown[]>(handler: (...args: A) => Promise<ExitCode>) =>
    async (...args: A) => {
      const options = args.find(
        (arg, index) => index === args.length - 2 && typeof arg === 'object',
      ) as CommonOptions | undefined;
      const global = program.opts<CommonOptions>();
      json = Boolean(options?.json || global.json);
      try {
        if (options !== undefined) withGlobalOptions(options, global);
        setExitCode(await handler(...args));
      } catch (error) {
        setExitCode(await reportError(error, json));
      }
    };

  const program = withCommonOptions(
    new Command('sessile')
      .description('Inspect, sweep and copy sessile session stores, and import from peer stores.')
      .showHelpAfterError('(sessile --help lists every command, address and exit code)')
      .addHelpText('after', EXIT_CODES_HELP)
      // The program's options are those before the command's name; each command reads its own.
      .enablePositionalOptions()
      .exitOverride(),
  );

  withCommonOptions(
    program
      .command('stats')
      .description('live count, size on disk, expired not yet swept, expiry range, owners')
      .argument('<url>', 'store address'),
  ).action(action((url: string, options: CommonOptions) => stats(url, options)));

  withCommonOptions(
    program
      .command('ls')
      .description('stream the ids of live sessions, one a line')
      .argument('<url>', 'store address'),
  ).action(action((url: string, options: CommonOptions) => ls(url, options)));

  withCommonOptions(
    program
      .command('show')
      .description(
        `print one session decoded with the app's codec (keys from ${AES_KEYS_VARIABLE})`,
      )
      .argument('<url>', 'store address')
      .argument('<id>', "session id (after -- when it starts with '-')")
      .option('--reveal', 'print the values; without it every value is redacted'),
  ).action(
    action((url: string, id: string, options: CommonOptions & { reveal?: boolean }) =>
      show(url, id, options),
    ),
  );

  withCommonOptions(
    program
      .command('sweep')
      .description("remove expired sessions with the store's bounded sweep, until done")
      .argument('<url>', 'store address')
      .option('--budget <ms>', 'stop after this many milliseconds (exit 5 if not done)')
      .option('--limit <n>', 'records one sweep call examines'),
  ).action(
    action((url: string, options: CommonOptions & { budget?: string; limit?: string }) =>
      sweep(url, {
        json: Boolean(options.json),
        maxRecordBytes: options.maxRecordBytes,
        ...(options.budget === undefined
          ? {}
          : { budget: parseWholeNumber(options.budget, '--budget', 'milliseconds', 0) }),
        ...(options.limit === undefined
          ? {}
          : { limit: parseWholeNumber(options.limit, '--limit', 'records', 1) }),
      }),
    ),
  );

  const transferOptions = (command: Command) =>
    withCommonOptions(
      command
        .option('--to <url>', 'target store address (required)')
        .option('--overwrite', 'replace sessions the target already holds (default: keep them)')
        .option('--dry-run', 'count what would be written, write nothing')
        .option('--concurrency <n>', 'records in flight at once', '64')
        .option(
          '--ledger <file>',
          'ids brought over before, never written again (so logouts since stay), and brought in line with the source where the new app has not saved them since; this run adds to it',
        ),
    );
  type TransferArguments = CommonOptions & Record<string, unknown>;

  transferOptions(
    program
      .command('copy')
      .description('copy every live session with its expiry; resumable and idempotent')
      .usage('--from <url> --to <url> [options]')
      .option('--from <url>', 'source store address (required)'),
  ).action(
    action((options: TransferArguments) =>
      copy({
        from: requiredValue(options.from, '--from <url>'),
        to: requiredValue(options.to, '--to <url>'),
        overwrite: Boolean(options.overwrite),
        dryRun: Boolean(options.dryRun),
        json: Boolean(options.json),
        maxRecordBytes: options.maxRecordBytes,
        concurrency: parseConcurrency(String(options.concurrency)),
        ...(options.ledger === undefined ? {} : { ledger: String(options.ledger) }),
      }),
    ),
  );

  transferOptions(
    program
      .command('import')
      .description("import a peer store's sessions so express-session reads them back identically")
      .usage('--from <peer> --to <url> [options]')
      .option('--from <peer>', 'peer address (required)')
      .option(
        '--table <name>',
        'peer table (connect-sqlite3, better-sqlite3-session-store, connect-pg-simple)',
      )
      // Without defaults here: an option given for a peer that does not read it is refused.
      .option('--schema <name>', 'connect-pg-simple schema (default: "public")')
      .option(
        '--prefix <prefix>',
        'key prefix (connect-redis, default "sess:"; level-session-store, default none)',
      )
      .option('--ttl <seconds>', "session-file-store's ttl option (default: 3600)")
      .option(
        '--file-extension <ext>',
        'session-file-store\'s fileExtension option (default: ".json")',
      )
      .option(
        '--default-ttl <ms>',
        'lifetime of a session the peer keeps with no expiry',
        '86400000',
      ),
  ).action(
    action((options: TransferArguments) => {
      const from = requiredValue(options.from, '--from <peer>');
      const to = requiredValue(options.to, '--to <url>');
      // In ms, as the peer's expiry is computed, it stays a safe integer.
      const ttlSeconds =
        options.ttl === undefined
          ? undefined
          : parseWholeNumber(
              String(options.ttl),
              '--ttl',
              'seconds',
              1,
              Math.floor(Number.MAX_SAFE_INTEGER / 1000),
            );
      return importSessions({
        from,
        to,
        overwrite: Boolean(options.overwrite),
        dryRun: Boolean(options.dryRun),
        json: Boolean(options.json),
        maxRecordBytes: options.maxRecordBytes,
        concurrency: parseConcurrency(String(options.concurrency)),
        ...(options.table === undefined ? {} : { table: String(options.table) }),
        ...(options.schema === undefined ? {} : { schema: String(options.schema) }),
        ...(options.prefix === undefined ? {} : { prefix: String(options.prefix) }),
        ...(ttlSeconds === undefined ? {} : { ttlSeconds }),
        ...(options.fileExtension === undefined
          ? {}
          : { fileExtension: parseFileExtension(String(options.fileExtension)) }),
        // The rule of toExpressStore's `defaultTtlMs`, which it stands in for.
        defaultTtlMs: parseWholeNumber(
          String(options.defaultTtl),
          '--default-ttl',
          'milliseconds',
          1,
          MAX_SESSION_TIMEOUT_MS,
        ),
        ...(options.ledger === undefined ? {} : { ledger: String(options.ledger) }),
      });
    }),
  );

  return program;
}

/** A file name ending: not empty (session-file-store reads '' as its default) and no path. */
function parseFileExtension(text: string): string {
  if (text === '' || text.includes('/') || text.includes('\\') || text.includes('\0')) {
    throw usageError(
      `--file-extension must be the end of a file name, such as .json (got ${JSON.stringify(text)})`,
    );
  }
  return text;
}

/** What is wrong with an `argv` that names no command `sessile` has. */
function missingCommand(argv: readonly string[]): string {
  const named = argv.filter(
    (arg, index) => !arg.startsWith('-') && !VALUE_OPTIONS.includes(argv[index - 1] as string),
  );
  const unknown = named[0] === 'help' ? named[1] : named[0];
  return unknown === undefined
    ? 'no command given (stats, ls, show, sweep, copy or import)'
    : `unknown command '${unknown}'`;
}

/**
 * A session id given to `show` before `--` that starts with '-': commander reads it as options,
 * and one starting with `-V` printed the version and exited 0, as if shown.
 */
function dashedShowId(program: Command, argv: readonly string[]): string | undefined {
  const end = argv.indexOf('--');
  const before = end === -1 ? argv : argv.slice(0, end);
  const command = before.find(
    (arg, index) => !arg.startsWith('-') && !VALUE_OPTIONS.includes(before[index - 1] as string),
  );
  if (command !== 'show') return undefined;
  const flags = program.commands
    .filter((each) => each.name() === 'show')
    .flatMap((each) => each.options.flatMap((option) => [option.long, option.short]));
  return before.find((arg) => arg.startsWith('-') && isSessionId(arg) && !flags.includes(arg));
}

const HELP_CODES = new Set(['commander.helpDisplayed', 'commander.help', 'commander.version']);

/** Runs `sessile` with `argv` (without node and the script); resolves to the exit code. */
export async function run(argv: readonly string[]): Promise<ExitCode> {
  let exitCode: ExitCode = EXIT.ok;
  const program = buildProgram((code) => {
    exitCode = code;
  });
  const dashed = dashedShowId(program, argv);
  if (dashed !== undefined) {
    const message = `the session id ${maskId(dashed)} starts with '-', which reads as an option: give it after --, as in sessile show URL -- ID`;
    return reportError(usageError(message), wantsJson(argv));
  }
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // `--help`, `sessile help [command]` and `--version` print what was asked for; help
      // shown for a missing command comes with a non-zero exitCode, a usage error.
      if (HELP_CODES.has(error.code) && error.exitCode === 0) return EXIT.ok;
      if (error.code === 'commander.help') {
        // Help shown for no command, or for `help bogus`, whose message is "(outputHelp)".
        return reportError(usageError(missingCommand(argv)), wantsJson(argv));
      }
      // Commander has already said what was wrong on stderr; scripts get it as JSON on stdout.
      if (wantsJson(argv)) {
        await printFailureJson(usageError(error.message.replace(/^error: /, '')));
      }
      return EXIT.usage;
    }
    return reportError(error, wantsJson(argv));
  }
  return exitCode;
}
