// The prepack script of every private package (the workspace root, benchmarks, reliability,
// docs-test):
// `pnpm -r pack` and `npm pack` pack private packages too, so this is what keeps them out.
import { readFileSync } from 'node:fs';

const { name } = JSON.parse(readFileSync('package.json', 'utf8'));
console.error(
  `${name} is private: it is never packed or published. ` +
    'Pack the published packages with `pnpm pack:packages`.',
);
process.exitCode = 1;
