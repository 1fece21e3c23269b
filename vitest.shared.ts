/**
 * The timeouts of the suites that wait on child processes, real servers, locks and disks. They
 * share two cores with the other packages' suites in CI, where vitest's 5 s default failed tests
 * that took 5.1 s. A timeout bounds a hung test; it asserts nothing about speed.
 */
export const WAITING_SUITE_TIMEOUTS = { testTimeout: 60_000, hookTimeout: 60_000 };
