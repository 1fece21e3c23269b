import { correctProbe, runDirectoryProbe } from './probe-stores.js';

// The same store with a probe that agrees with its open: every test of the group passes.
runDirectoryProbe('CorrectProbeStore', correctProbe);
