import { defineConfig } from 'vitest/config';

// Runs the suite against the deliberately broken stores; only broken.test.ts starts this.
export default defineConfig({
  test: { root: import.meta.dirname, include: ['*.fixture.ts'] },
});
