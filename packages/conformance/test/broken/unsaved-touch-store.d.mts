import { BaseStore } from '@sessile/core/store';

export declare class UnsavedTouchStore extends BaseStore {
  static open(path: string): Promise<UnsavedTouchStore>;
}

export declare class LazyTouchStore extends UnsavedTouchStore {
  static open(path: string): Promise<LazyTouchStore>;
}

export declare class SweepOutlivesCloseStore extends UnsavedTouchStore {
  static open(path: string): Promise<SweepOutlivesCloseStore>;
}
