#!/usr/bin/env node
import { EXIT } from './exit-codes.js';
import { run } from './program.js';

process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  // `sessile ls URL | head` closes stdout early; that is the reader's choice, not a failure.
  if (error.code === 'EPIPE') process.exit(EXIT.ok);
  // A full disk under `sessile ls URL > ids.txt`: said in one line, not as a crash.
  process.stderr.write(`sessile: cannot write the output (${error.code ?? error.message})\n`);
  process.exit(EXIT.failure);
});

process.exitCode = await run(process.argv.slice(2));
