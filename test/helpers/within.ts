/** Rejects if `p` has not settled within `ms`: a deadline for a wait on an event, not a measurement. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Retries `attempt` until it returns (or resolves with) true, every `everyMs`, for at most `ms`:
 * polling with a deadline, for state that has no event to wait on.
 */
export async function eventually(attempt: () => boolean | Promise<boolean>, what: string, ms = 10_000, everyMs = 25): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await attempt()) return;
    if (Date.now() >= deadline) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
