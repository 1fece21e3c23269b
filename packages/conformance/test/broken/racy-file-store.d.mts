import { BaseStore } from '@sessile/core/store';

export declare class RacyFileStore extends BaseStore {
  static open(directory: string): Promise<RacyFileStore>;
}
