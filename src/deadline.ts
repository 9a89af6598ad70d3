/**
 * A moment at which something stops being valid (a certificate's notAfter, a token's exp + skew),
 * as one unref'd timer. setTimeout caps its delay at 2^31 - 1 ms (about 24.8 days) and fires at
 * once past it; a later moment is reached by re-arming at that cap until it is near.
 */
const MAX_DELAY = 2_147_483_647;

export interface Deadline {
  /** ms since the epoch; Infinity for never. */
  readonly at: number;
  timer: NodeJS.Timeout | undefined;
  /** Called once, at (or just after) `at`. */
  expire(): void;
}

function fire(d: Deadline): void {
  d.timer = undefined;
  d.expire();
}

/** Arms (or re-arms) `d`; nothing for a deadline at Infinity. No closure: the timer carries `d`. */
export function arm(d: Deadline): void {
  if (d.at === Infinity) return;
  const wait = d.at - Date.now();
  d.timer = wait > MAX_DELAY ? setTimeout(arm, MAX_DELAY, d) : setTimeout(fire, Math.max(0, wait), d);
  d.timer.unref();
}

export function disarm(d: Deadline): void {
  if (d.timer !== undefined) clearTimeout(d.timer);
  d.timer = undefined;
}
