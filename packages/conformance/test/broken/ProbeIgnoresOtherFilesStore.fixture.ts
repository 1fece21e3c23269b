import { probeThatIgnoresOtherFiles, runDirectoryProbe } from './probe-stores.js';

runDirectoryProbe('ProbeIgnoresOtherFilesStore', probeThatIgnoresOtherFiles);
