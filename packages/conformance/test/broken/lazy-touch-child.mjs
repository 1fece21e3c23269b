import { LazyTouchStore } from './unsaved-touch-store.mjs';

export default (location) => LazyTouchStore.open(location);
