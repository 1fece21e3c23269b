import { UnsavedTouchStore } from './unsaved-touch-store.mjs';

export default (location) => UnsavedTouchStore.open(location);
