const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A duration as people type it on a command line or in a variable: `500ms`,
 * `30s`, `5m`, `1h30m`, `2d`, or a bare number of seconds (`90`, `1.5`).
 * Returns milliseconds (rounded), or undefined when the text is not a
 * duration. Bounds and special words ("forever") are the caller's.
 */
export function parseDuration(text: string): number | undefined {
  const value = text.trim().toLowerCase();
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(Number(value) * 1000);
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join("") !== value) return undefined;
  return Math.round(parts.reduce((sum, p) => sum + Number(p[1]) * UNITS[p[2]!]!, 0));
}

/** A duration for people: `850ms`, `12.3s`, `5m3s`. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 120) return `${Math.round(s * 10) / 10}s`;
  return `${Math.floor(s / 60)}m${Math.round(s % 60)}s`;
}
