/**
 * A strict parser of the Prometheus text exposition format (0.0.4), for
 * tests: it throws on anything a Prometheus server would reject or that
 * breaks the format's rules (a sample before its TYPE, a family split in
 * two, a duplicate series, a histogram whose buckets do not add up), so a
 * test that parses /metrics also proves the endpoint is well-formed.
 */

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  /** The sample's own name (with _bucket, _sum, _count for histograms). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  type: MetricType;
  help: string;
  samples: Sample[];
}

export class Exposition {
  constructor(readonly families: Map<string, Family>) {}

  /** Every sample name, histogram suffixes included. */
  sampleNames(): Set<string> {
    return new Set([...this.families.values()].flatMap((f) => f.samples.map((s) => s.name)));
  }

  samples(name: string): Sample[] {
    return [...this.families.values()].flatMap((f) => f.samples.filter((s) => s.name === name));
  }

  /** Sum of the samples of `name` whose labels include `labels`; 0 when none. */
  sum(name: string, labels: Record<string, string> = {}): number {
    return this.samples(name)
      .filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))
      .reduce((total, s) => total + s.value, 0);
  }
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<MetricType>(["counter", "gauge", "histogram", "summary", "untyped"]);

export function parseExposition(text: string): Exposition {
  const families = new Map<string, Family>();
  const closed = new Set<string>();
  const seen = new Set<string>();
  let current: Family | undefined;
  const lines = text.split("\n");
  if (lines.at(-1) !== "") throw new Error("exposition must end with a newline");
  lines.forEach((line, index) => {
    const where = `line ${index + 1}: ${line}`;
    if (line === "") return;
    if (line.startsWith("#")) {
      const match = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!match) return; // a plain comment
      const [, keyword, name, rest] = match as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`bad metric name, ${where}`);
      const family = families.get(name) ?? { name, type: "untyped" as MetricType, help: "", samples: [] };
      if (closed.has(name)) throw new Error(`metadata after the family ended, ${where}`);
      if (keyword === "TYPE") {
        if (!TYPES.has(rest as MetricType)) throw new Error(`unknown type, ${where}`);
        if (family.samples.length > 0) throw new Error(`TYPE after samples, ${where}`);
        family.type = rest as MetricType;
      } else {
        family.help = rest;
      }
      if (current && current.name !== name) closed.add(current.name);
      families.set(name, family);
      current = family;
      return;
    }
    const sample = parseSample(line, where);
    const family = familyOf(sample.name, families);
    if (!family) throw new Error(`sample without a TYPE, ${where}`);
    if (closed.has(family.name)) throw new Error(`family ${family.name} is split, ${where}`);
    if (current && current.name !== family.name) closed.add(current.name);
    current = family;
    const key = `${sample.name}${JSON.stringify(Object.entries(sample.labels).sort())}`;
    if (seen.has(key)) throw new Error(`duplicate series, ${where}`);
    seen.add(key);
    family.samples.push(sample);
  });
  for (const family of families.values()) {
    if (family.type === "histogram") checkHistogram(family);
    if (family.type === "counter" && family.samples.some((s) => s.value < 0)) throw new Error(`negative counter ${family.name}`);
  }
  return new Exposition(families);
}

function familyOf(sampleName: string, families: Map<string, Family>): Family | undefined {
  const direct = families.get(sampleName);
  if (direct) return direct;
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!sampleName.endsWith(suffix)) continue;
    const family = families.get(sampleName.slice(0, -suffix.length));
    if (family && (family.type === "histogram" || family.type === "summary")) return family;
  }
  return undefined;
}

function parseSample(line: string, where: string): Sample {
  const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)( -?\d+)?$/.exec(line);
  if (!match) throw new Error(`malformed sample, ${where}`);
  const [, name, labelText, valueText] = match as unknown as [string, string, string | undefined, string];
  return { name, labels: labelText ? parseLabels(labelText.slice(1, -1), where) : {}, value: parseValue(valueText, where) };
}

function parseLabels(text: string, where: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest.length > 0) {
    const match = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\[\\"n])*)"(,?)/.exec(rest);
    if (!match) throw new Error(`malformed labels, ${where}`);
    const [whole, name, raw, comma] = match as unknown as [string, string, string, string];
    if (!LABEL_NAME.test(name) || name in labels) throw new Error(`bad or repeated label ${name}, ${where}`);
    labels[name] = raw.replace(/\\(["\\n])/g, (_, c: string) => (c === "n" ? "\n" : c));
    rest = rest.slice(whole.length);
    if (!comma && rest.length > 0) throw new Error(`malformed labels, ${where}`);
  }
  return labels;
}

function parseValue(text: string, where: string): number {
  // Prometheus reads these with Go's ParseFloat, whatever their case; and
  // prom-client writes "Nan" (an event-loop lag with no sample yet).
  const special = text.toLowerCase();
  if (special === "+inf" || special === "inf") return Infinity;
  if (special === "-inf") return -Infinity;
  if (special === "nan") return NaN;
  const value = Number(text);
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text) || Number.isNaN(value)) throw new Error(`bad value, ${where}`);
  return value;
}

/** Buckets per series: cumulative, ending at +Inf, equal to _count. */
function checkHistogram(family: Family): void {
  const series = new Map<string, { buckets: [number, number][]; count?: number }>();
  const keyOf = (labels: Record<string, string>) =>
    JSON.stringify(
      Object.entries(labels)
        .filter(([k]) => k !== "le")
        .sort(),
    );
  for (const sample of family.samples) {
    const entry = series.get(keyOf(sample.labels)) ?? { buckets: [] };
    series.set(keyOf(sample.labels), entry);
    if (sample.name.endsWith("_bucket")) {
      const le = sample.labels.le;
      if (le === undefined) throw new Error(`${family.name}: bucket without le`);
      entry.buckets.push([le === "+Inf" ? Infinity : Number(le), sample.value]);
    } else if (sample.name.endsWith("_count")) {
      entry.count = sample.value;
    }
  }
  for (const [key, { buckets, count }] of series) {
    const last = buckets.at(-1);
    if (!last || last[0] !== Infinity) throw new Error(`${family.name}${key}: no +Inf bucket`);
    for (let i = 1; i < buckets.length; i++) {
      if (buckets[i]![0] <= buckets[i - 1]![0] || buckets[i]![1] < buckets[i - 1]![1]) {
        throw new Error(`${family.name}${key}: buckets are not cumulative`);
      }
    }
    if (count !== last[1]) throw new Error(`${family.name}${key}: _count ${count} differs from the +Inf bucket ${last[1]}`);
  }
}
