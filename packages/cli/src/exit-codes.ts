/** What `sessile` exits with. Stable: scripts branch on them, and the README lists them. */
export const EXIT = {
  /** The command did all it was asked. */
  ok: 0,
  /** A store or a peer failed: I/O, a corrupt or foreign file, a table that is not what it claims. */
  failure: 1,
  /** Bad arguments: an unknown command or option, a malformed address or id. */
  usage: 2,
  /** The store package (or the driver that reads a peer's data) is not installed. */
  missingPackage: 3,
  /** `show`: no live session has that id. */
  notFound: 4,
  /** Finished, but some records could not be read and were skipped, or `sweep` ran out of budget. */
  incomplete: 5,
  /** Stopped by SIGINT or SIGTERM; what was written stays written, and running it again resumes. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** A failure the CLI reports as one line and an exit code, without a stack trace. */
export class CliError extends Error {
  override readonly name = 'CliError';
  readonly exitCode: ExitCode;
  /** A stable word for `--json` output: the SessionError code, or one of the CLI's own. */
  readonly code: string;
  /**
   * What the command had done before it failed, for `--json` output beside the error: a copy or
   * an import stopped by a session the target refuses still wrote the sessions before it.
   */
  done?: Record<string, unknown>;

  constructor(message: string, exitCode: ExitCode, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.exitCode = exitCode;
    this.code = code;
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, EXIT.usage, 'ERR_USAGE');
}
