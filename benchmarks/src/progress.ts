import type { ProgressSink } from './run.js';

function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.round(ms / 1000));
  const minutes = Math.floor(seconds / 60);
  return minutes > 0 ? `${minutes}m${String(seconds % 60).padStart(2, '0')}s` : `${seconds}s`;
}

/**
 * Shows what runs and an estimate of the time left. On a terminal it redraws one status line
 * every half second; otherwise (CI, pipes) it prints one plain line per finished step.
 */
export class ConsoleProgress implements ProgressSink {
  readonly #stream: NodeJS.WriteStream;
  readonly #live: boolean;
  #steps: { target: string; workload: string; estimateMs: number }[] = [];
  #done = 0;
  #estimatedDoneMs = 0;
  #started = performance.now();
  #stepStarted = performance.now();
  #current = '';
  #timer: NodeJS.Timeout | undefined;

  constructor(stream: NodeJS.WriteStream = process.stderr) {
    this.#stream = stream;
    this.#live = stream.isTTY === true;
  }

  plan(steps: { target: string; workload: string; estimateMs: number }[]): void {
    this.#steps = steps;
    this.#started = performance.now();
    const total = steps.reduce((sum, step) => sum + step.estimateMs, 0);
    this.#line(`${steps.length} steps, about ${formatDuration(total)}`);
    if (this.#live) {
      this.#timer = setInterval(() => this.#draw(), 500);
      this.#timer.unref();
    }
  }

  start(target: string, workload: string, round: number): void {
    this.#stepStarted = performance.now();
    this.#current = `${target} · ${workload}${round > 0 ? ` (repeat ${round + 1})` : ''}`;
    this.#draw();
  }

  finish(target: string, workload: string, outcome: string): void {
    const stepMs = performance.now() - this.#stepStarted;
    const step = this.#steps[this.#done];
    this.#estimatedDoneMs += step?.estimateMs ?? 0;
    this.#done++;
    const prefix = `[${this.#done}/${this.#steps.length}]`;
    if (this.#live) {
      if (outcome !== 'ok') this.#line(`${prefix} ${target} · ${workload}: ${outcome}`);
    } else {
      this.#line(
        `${prefix} ${target} · ${workload}: ${outcome} (${formatDuration(stepMs)}, ${this.#eta()} left)`,
      );
    }
    this.#draw();
  }

  end(): void {
    clearInterval(this.#timer);
    if (this.#live) this.#stream.write('\r\x1b[2K');
    this.#line(`finished in ${formatDuration(performance.now() - this.#started)}`);
  }

  /** Remaining estimates, scaled by how fast the run has gone against its estimates so far. */
  #eta(): string {
    const remaining = this.#steps.slice(this.#done).reduce((sum, step) => sum + step.estimateMs, 0);
    const elapsed = performance.now() - this.#started;
    const pace =
      this.#estimatedDoneMs > 0 ? Math.min(3, Math.max(0.3, elapsed / this.#estimatedDoneMs)) : 1;
    return formatDuration(remaining * pace);
  }

  #draw(): void {
    if (!this.#live || this.#done >= this.#steps.length) return;
    const status = `[${this.#done + 1}/${this.#steps.length}] ${this.#current} ${formatDuration(performance.now() - this.#stepStarted)} · about ${this.#eta()} left`;
    this.#stream.write(`\r\x1b[2K${status.slice(0, (this.#stream.columns ?? 100) - 1)}`);
  }

  #line(text: string): void {
    this.#stream.write(`${this.#live ? '\r\x1b[2K' : ''}${text}\n`);
  }
}
