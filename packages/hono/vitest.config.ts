import { defineConfig } from 'vitest/config';

// Real HTTP servers over real stores share two cores with other suites: allow slow runs, never assert on time.
export default defineConfig({
  test: { testTimeout: 120_000, hookTimeout: 60_000 },
});
