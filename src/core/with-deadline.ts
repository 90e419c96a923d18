/**
 * Settles like `work`, or rejects with `onTimeout()` once `ms` have passed. The work itself
 * cannot be stopped (a stuck file system call holds its thread): it is only no longer awaited.
 */
export async function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  // A late failure of abandoned work is of no interest, and must not be an unhandled rejection.
  work.catch(() => {});
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
