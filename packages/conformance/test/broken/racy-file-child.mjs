import { RacyFileStore } from './racy-file-store.mjs';

export default (location) => RacyFileStore.open(location);
