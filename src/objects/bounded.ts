// Calls from one object to another, with a deadline.

/**
 * Longest wait for one call to another object (a scope, the directory, a
 * watch branch). One slow object must not hold the caller's queue for longer:
 * a RelayObject's heartbeats, a scope's deliveries to its other branches.
 */
export const OBJECT_CALL_TIMEOUT_MS = 2000;

/** A call to another object that gives up after `ms` (the call itself may still complete later). */
export function bounded<T>(call: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | null = null;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
}
