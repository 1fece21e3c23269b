import { defineConfig } from 'vitest/config';

// The failure tests kill server backends and may restart the server: no other file of this
// package may run against it meanwhile.
export default defineConfig({ test: { fileParallelism: false } });
