/**
 * zot's `storage.gcTimeWindow`: "HH:MM-HH:MM", a daily window in UTC in which a periodic garbage
 * collection that is due may start (a start after the end wraps past midnight). A collection
 * that started inside the window runs to its end.
 */
export interface GcTimeWindow {
  /** Minutes since midnight, UTC. */
  startMin: number;
  endMin: number;
}

function minutesOf(value: string): number | undefined {
  const m = /^(\d{1,2}):(\d{2})$/.exec(value.trim());
  if (!m) return undefined;
  const h = Number(m[1]);
  const min = Number(m[2]);
  return h < 24 && min < 60 ? h * 60 + min : undefined;
}

/** The window, or a reason it cannot be one. An empty string is no window, as in zot. */
export function parseGcTimeWindow(value: string): GcTimeWindow | undefined | string {
  if (value === "") return undefined;
  const dash = value.indexOf("-");
  if (dash < 0) return 'expected "HH:MM-HH:MM" (UTC), such as "01:00-06:00"';
  const startMin = minutesOf(value.slice(0, dash));
  const endMin = minutesOf(value.slice(dash + 1));
  if (startMin === undefined || endMin === undefined) {
    return 'expected two 24-hour times "HH:MM-HH:MM" (UTC), such as "22:00-06:00"';
  }
  if (startMin === endMin) return "the window's start and end are the same time";
  return { startMin, endMin };
}

export function inGcTimeWindow(window: GcTimeWindow | undefined, now: Date): boolean {
  if (!window) return true;
  const m = now.getUTCHours() * 60 + now.getUTCMinutes();
  return window.startMin <= window.endMin
    ? m >= window.startMin && m < window.endMin
    : m >= window.startMin || m < window.endMin;
}
