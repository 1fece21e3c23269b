import { SweepOutlivesCloseStore } from './unsaved-touch-store.mjs';

export default (location) => SweepOutlivesCloseStore.open(location);
