import { defineConfig } from 'vitest/config';
import { WAITING_SUITE_TIMEOUTS } from '../../vitest.shared.js';

export default defineConfig({ test: WAITING_SUITE_TIMEOUTS });
