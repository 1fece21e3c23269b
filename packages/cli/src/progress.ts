import cliProgress from 'cli-progress';

/** Whether a bar would be drawn: only on a terminal, and never under `--json`. */
export function progressShown(json: boolean | undefined): boolean {
  return !json && process.stderr.isTTY === true;
}

/** A progress bar on stderr with rate and ETA; silent when stderr is not a terminal or output is JSON. */
export class Progress {
  readonly #bar: cliProgress.SingleBar | undefined;
  readonly #startedAt = Date.now();
  #value = 0;

  constructor(label: string, total: number | undefined, enabled: boolean) {
    if (!enabled || process.stderr.isTTY !== true) return;
    const known = total !== undefined && total > 0;
    this.#bar = new cliProgress.SingleBar(
      {
        stream: process.stderr,
        format: known
          ? `${label} {bar} {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted}`
          : `${label} {value} | {rate}/s`,
        hideCursor: true,
        etaBuffer: 200,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
    this.#bar.start(known ? total : 0, 0, { rate: '0' });
  }

  increment(by = 1): void {
    this.#value += by;
    if (this.#bar === undefined) return;
    const seconds = Math.max((Date.now() - this.#startedAt) / 1000, 0.001);
    this.#bar.update(this.#value, { rate: Math.round(this.#value / seconds).toString() });
  }

  stop(): void {
    this.#bar?.stop();
  }
}
