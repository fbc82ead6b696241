/**
 * Just enough SVG for the benchmark's chart: horizontal bar and range
 * panels stacked in one image, with reference lines for the targets.
 * Output depends on the input only, so a test can pin it.
 */

export const COLORS = {
  bar: "#3b82f6",
  barLight: "#bfdbfe",
  baseline: "#9ca3af",
  pass: "#16a34a",
  miss: "#dc2626",
  ink: "#111827",
  muted: "#6b7280",
  grid: "#e5e7eb",
  limit: "#f59e0b",
} as const;

export const LAYOUT = {
  width: 960,
  labelWidth: 280,
  plotLeft: 290,
  plotRight: 760,
  rowHeight: 24,
  barHeight: 14,
  panelGap: 28,
  // Room under the subtitle for the labels of the dashed target lines.
  titleHeight: 56,
  axisHeight: 22,
} as const;

export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" })[c]!);
}

/** A number for an attribute: two decimals at most, no trailing zeros. */
export function n(value: number): string {
  return String(Math.round(value * 100) / 100);
}

export function text(x: number, y: number, content: string, attrs: Record<string, string | number> = {}): string {
  return `<text x="${n(x)}" y="${n(y)}"${attributes(attrs)}>${escapeXml(content)}</text>`;
}

export function rect(x: number, y: number, width: number, height: number, attrs: Record<string, string | number> = {}): string {
  return `<rect x="${n(x)}" y="${n(y)}" width="${n(Math.max(0, width))}" height="${n(height)}"${attributes(attrs)}/>`;
}

export function line(x1: number, y1: number, x2: number, y2: number, attrs: Record<string, string | number> = {}): string {
  return `<line x1="${n(x1)}" y1="${n(y1)}" x2="${n(x2)}" y2="${n(y2)}"${attributes(attrs)}/>`;
}

export function circle(cx: number, cy: number, r: number, attrs: Record<string, string | number> = {}): string {
  return `<circle cx="${n(cx)}" cy="${n(cy)}" r="${n(r)}"${attributes(attrs)}/>`;
}

function attributes(attrs: Record<string, string | number>): string {
  return Object.entries(attrs)
    .map(([key, value]) => ` ${key}="${typeof value === "number" ? n(value) : escapeXml(value)}"`)
    .join("");
}

/** Maps a value onto the plot's x range. */
export interface Scale {
  x(value: number): number;
  ticks: { value: number; label: string }[];
}

export function linearScale(max: number, ticks: number[], format: (v: number) => string): Scale {
  const { plotLeft, plotRight } = LAYOUT;
  const top = max > 0 ? max : 1;
  return {
    x: (value) => plotLeft + (Math.min(Math.max(value, 0), top) / top) * (plotRight - plotLeft),
    ticks: ticks.filter((t) => t <= top).map((value) => ({ value, label: format(value) })),
  };
}

export function logScale(min: number, max: number, format: (v: number) => string): Scale {
  const { plotLeft, plotRight } = LAYOUT;
  const lo = Math.floor(Math.log10(min));
  const hi = Math.ceil(Math.log10(max));
  const span = Math.max(1, hi - lo);
  const ticks: { value: number; label: string }[] = [];
  for (let e = lo; e <= hi; e++) ticks.push({ value: 10 ** e, label: format(10 ** e) });
  return {
    x: (value) => plotLeft + ((Math.log10(Math.max(value, 10 ** lo)) - lo) / span) * (plotRight - plotLeft),
    ticks,
  };
}

/** "Nice" linear ticks (1, 2, 5 × 10^k steps), about `count` of them, up to at least `max`. */
export function niceTicks(max: number, count = 5): number[] {
  if (!(max > 0)) return [0];
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let v = 0; v <= max + step * 0.999; v += step) ticks.push(Math.round(v / step) * step);
  return ticks;
}

export interface Panel {
  title: string;
  subtitle: string;
  scale: Scale;
  rows: PanelRow[];
  /** Dashed vertical lines: targets and limits. */
  references?: { value: number; label: string; color?: string }[];
}

export interface PanelRow {
  label: string;
  /** Drawn in order, each from 0: draw the longest first so the others show on top. */
  bars?: { value: number; color: string }[];
  /** A range (low to high) with marks on it, for latency percentiles. */
  range?: { low: number; high: number; marks: { value: number; color: string; r: number }[] };
  note: string;
  noteColor?: string;
}

/** The height a panel takes, so panels can be stacked. */
export function panelHeight(panel: Panel): number {
  return LAYOUT.titleHeight + panel.rows.length * LAYOUT.rowHeight + LAYOUT.axisHeight;
}

export function renderPanel(panel: Panel, top: number): string {
  const { titleHeight, rowHeight, barHeight, plotLeft, plotRight, labelWidth } = LAYOUT;
  const parts: string[] = [];
  parts.push(text(16, top + 18, panel.title, { "font-size": 15, "font-weight": 600, fill: COLORS.ink }));
  parts.push(text(16, top + 35, panel.subtitle, { "font-size": 12, fill: COLORS.muted }));
  const plotTop = top + titleHeight;
  const plotBottom = plotTop + panel.rows.length * rowHeight;
  for (const tick of panel.scale.ticks) {
    const x = panel.scale.x(tick.value);
    parts.push(line(x, plotTop, x, plotBottom, { stroke: COLORS.grid }));
    parts.push(text(x, plotBottom + 14, tick.label, { "font-size": 10, fill: COLORS.muted, "text-anchor": "middle" }));
  }
  panel.rows.forEach((row, index) => {
    const y = plotTop + index * rowHeight;
    const middle = y + rowHeight / 2;
    parts.push(text(labelWidth, middle + 4, row.label, { "font-size": 12, fill: COLORS.ink, "text-anchor": "end" }));
    for (const bar of row.bars ?? []) {
      parts.push(rect(plotLeft, middle - barHeight / 2, panel.scale.x(bar.value) - plotLeft, barHeight, { fill: bar.color, rx: 2 }));
    }
    if (row.range) {
      parts.push(line(panel.scale.x(row.range.low), middle, panel.scale.x(row.range.high), middle, { stroke: COLORS.baseline, "stroke-width": 2 }));
      for (const mark of row.range.marks) parts.push(circle(panel.scale.x(mark.value), middle, mark.r, { fill: mark.color }));
    }
    parts.push(text(plotRight + 10, middle + 4, row.note, { "font-size": 11, fill: row.noteColor ?? COLORS.ink }));
  });
  for (const reference of panel.references ?? []) {
    const x = panel.scale.x(reference.value);
    const color = reference.color ?? COLORS.limit;
    parts.push(line(x, plotTop - 4, x, plotBottom, { stroke: color, "stroke-width": 1.5, "stroke-dasharray": "4 3" }));
    parts.push(text(x + 3, plotTop - 6, reference.label, { "font-size": 10, fill: color }));
  }
  return parts.join("\n");
}

/** Panels stacked top to bottom, with a caption under them. */
export function renderChart(panels: readonly Panel[], caption: string, title: string): string {
  const parts: string[] = [];
  let top = 12;
  for (const panel of panels) {
    parts.push(renderPanel(panel, top));
    top += panelHeight(panel) + LAYOUT.panelGap;
  }
  parts.push(text(16, top, caption, { "font-size": 11, fill: COLORS.muted }));
  const height = top + 16;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${LAYOUT.width}" height="${n(height)}" viewBox="0 0 ${LAYOUT.width} ${n(height)}" font-family="system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif" role="img" aria-label="${escapeXml(title)}">`,
    `<title>${escapeXml(title)}</title>`,
    rect(0, 0, LAYOUT.width, height, { fill: "#ffffff" }),
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}
