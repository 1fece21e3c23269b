import { defineConfig } from 'vitest/config';
import { WAITING_SUITE_TIMEOUTS } from '../../vitest.shared.js';

// The failure tests kill server backends and may restart the server: no other file of this
// package may run against it meanwhile.
export default defineConfig({ test: { fileParallelism: false, ...WAITING_SUITE_TIMEOUTS } });
