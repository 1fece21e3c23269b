import { defineConfig } from 'vitest/config';

// Each code block runs in its own Node process, servers and stores included: allow slow machines.
export default defineConfig({
  test: { testTimeout: 120_000 },
});
