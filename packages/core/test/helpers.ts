import { isSessionError } from '../src/index.js';

/** `undefined` when `promise` resolves, else its `SessionError` code (or the error as text). */
export async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
    return undefined;
  } catch (error) {
    return isSessionError(error) ? error.code : String(error);
  }
}
