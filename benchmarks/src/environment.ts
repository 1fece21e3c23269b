import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';

export interface Environment {
  node: string;
  platform: string;
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  /** 1-minute load average when the run started: other work on the machine skews absolute figures. */
  loadAverage: number;
  date: string;
  gitCommit?: string;
  /**
   * Each target's temp directory sat in a block group of its own (`chattr +T` on the run
   * directory), so no target's file creations paid for inodes another target freed.
   */
  spreadTempDirs?: boolean;
  packages: Record<string, string>;
}

const BENCHMARKS_DIR = fileURLToPath(new URL('../', import.meta.url));

/** Versions of what was measured, read from the installed packages themselves. */
function packageVersions(): Record<string, string> {
  const manifest = JSON.parse(readFileSync(`${BENCHMARKS_DIR}package.json`, 'utf8')) as {
    dependencies: Record<string, string>;
  };
  const versions: Record<string, string> = {};
  for (const name of Object.keys(manifest.dependencies).sort()) {
    try {
      const installed = JSON.parse(
        readFileSync(`${BENCHMARKS_DIR}node_modules/${name}/package.json`, 'utf8'),
      ) as {
        version: string;
      };
      versions[name] = installed.version;
    } catch {
      versions[name] = 'not installed';
    }
  }
  return versions;
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: BENCHMARKS_DIR,
      encoding: 'utf8',
    }).trim();
  } catch {
    return undefined;
  }
}

export function describeEnvironment(): Environment {
  const commit = gitCommit();
  return {
    node: process.version,
    platform: `${platform()} ${release()}`,
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    loadAverage: Math.round((loadavg()[0] ?? 0) * 100) / 100,
    date: new Date().toISOString(),
    ...(commit === undefined ? {} : { gitCommit: commit }),
    packages: packageVersions(),
  };
}
