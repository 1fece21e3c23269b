import { runFullDisk, runHostile } from './disk/index.js';
import { runFuzz } from './fuzz/index.js';
import { runHttp } from './http/index.js';
import type { CheckRunner, Part } from './run.js';
import { runServers } from './servers/index.js';

/** The parts besides crashes, each run by its own module. */
export const RUNNERS: Partial<Record<Exclude<Part, 'crash'>, CheckRunner>> = {
  fuzz: runFuzz,
  disk: runFullDisk,
  hostile: runHostile,
  servers: runServers,
  http: runHttp,
};
