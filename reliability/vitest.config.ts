import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Crash rounds mostly wait (children starting, leases running out): three stores at a time.
    maxConcurrency: 3,
  },
});
