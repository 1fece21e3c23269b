// The first step of the prepack script of every published package that depends on another
// package of this workspace. pnpm pack and pnpm publish write the version in place of a
// `workspace:^` range; npm pack and yarn pack keep the range, and their tarball then fails to
// install (npm: EUNSUPPORTEDPROTOCOL). This stops them with a message saying what to run.
import { readFileSync } from 'node:fs';

const manifest = JSON.parse(readFileSync('package.json', 'utf8'));
const ranges = {
  ...manifest.dependencies,
  ...manifest.optionalDependencies,
  ...manifest.peerDependencies,
};
const linked = Object.keys(ranges).filter((name) => String(ranges[name]).startsWith('workspace:'));
// Set by the package manager running the script; never an input of a turbo task.
// biome-ignore lint/suspicious/noUndeclaredEnvVars: read only by pack and publish, outside turbo
const agent = process.env.npm_config_user_agent ?? '';
if (linked.length > 0 && !agent.startsWith('pnpm/')) {
  const packer = agent.split('/')[0] || 'this package manager';
  console.error(
    `${manifest.name} depends on ${linked.join(', ')} through workspace: ranges, which ${packer} ` +
      'would leave in the tarball and no install can resolve. Pack with pnpm: `pnpm pack` here, ' +
      'or `pnpm pack:packages` at the repository root for every package.',
  );
  process.exitCode = 1;
}
