import { probeThatCreates, runDirectoryProbe } from './probe-stores.js';

runDirectoryProbe('ProbeCreatesStore', probeThatCreates);
