import type { SyntaxNode } from "@lezer/common";
import { parser } from "@prometheus-io/lezer-promql";

/**
 * What a PromQL expression asks of the metrics, read with Prometheus's own
 * grammar (@prometheus-io/lezer-promql, the parser of Prometheus's web UI):
 * every vector selector with its label matchers, and every label an
 * aggregation or a vector match groups by, with the selectors it applies to.
 */

export interface Matcher {
  label: string;
  op: "=" | "!=" | "=~" | "!~";
  value: string;
}

export interface Selector {
  /** The metric name as written (a histogram's _bucket included); "" for a bare {…}. */
  metric: string;
  matchers: Matcher[];
}

export interface Grouping {
  /** by, without, on, ignoring or group_left/group_right. */
  clause: string;
  labels: string[];
  /** The selectors whose series the clause groups. */
  selectors: Selector[];
}

export interface Analysis {
  selectors: Selector[];
  groupings: Grouping[];
  /** Syntax errors: the text around each. */
  errors: string[];
}

/** Grafana's variables and macros, replaced the way Grafana would before Prometheus sees the query. */
export function substitute(expr: string, values: Record<string, string>): string {
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, braced: string | undefined, bare: string | undefined) => {
    const name = braced ?? bare ?? "";
    const value = values[name];
    if (value === undefined) throw new Error(`no value for the variable ${whole} in: ${expr}`);
    return value;
  });
}

function unquote(literal: string): string {
  // PromQL strings are Go strings: JSON reads the double-quoted ones.
  if (literal.startsWith('"')) return JSON.parse(literal) as string;
  return literal.slice(1, -1);
}

function children(node: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let child = node.firstChild; child; child = child.nextSibling) out.push(child);
  return out;
}

function descendants(node: SyntaxNode, name: string): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  const walk = (n: SyntaxNode) => {
    for (const child of children(n)) {
      if (child.name === name) out.push(child);
      walk(child);
    }
  };
  walk(node);
  return out;
}

export function analyze(expr: string): Analysis {
  const tree = parser.parse(expr);
  const text = (node: SyntaxNode) => expr.slice(node.from, node.to);
  const errors: string[] = [];
  tree.iterate({
    enter(ref) {
      if (ref.type.isError) errors.push(`syntax error at ${ref.from}: …${expr.slice(Math.max(0, ref.from - 20), ref.to + 20)}…`);
    },
  });

  const selectorOf = (node: SyntaxNode): Selector => {
    const identifier = children(node).find((c) => c.name === "Identifier");
    const matchers: Matcher[] = [];
    for (const matcher of descendants(node, "UnquotedLabelMatcher")) {
      const [name, op, value] = children(matcher);
      if (!name || !op || !value) continue;
      matchers.push({ label: text(name), op: text(op) as Matcher["op"], value: unquote(text(value)) });
    }
    if (descendants(node, "QuotedLabelMatcher").length > 0 || descendants(node, "QuotedLabelName").length > 0) {
      errors.push(`quoted label names are not supported here: ${text(node)}`);
    }
    return { metric: identifier ? text(identifier) : "", matchers };
  };

  const root = tree.topNode;
  const selectors = descendants(root, "VectorSelector").map(selectorOf);
  const groupings: Grouping[] = [];
  for (const aggregate of descendants(root, "AggregateExpr")) {
    const modifier = children(aggregate).find((c) => c.name === "AggregateModifier");
    if (!modifier) continue;
    const clause = children(modifier)[0];
    const labels = descendants(modifier, "LabelName").map(text);
    groupings.push({ clause: clause ? text(clause) : "by", labels, selectors: descendants(aggregate, "VectorSelector").map(selectorOf) });
  }
  for (const binary of descendants(root, "BinaryExpr")) {
    const matching = children(binary).find((c) => c.name === "MatchingModifierClause");
    if (!matching) continue;
    for (const part of children(matching)) {
      if (part.name !== "GroupingLabels") continue;
      const clause = part.prevSibling ? text(part.prevSibling) : "on";
      groupings.push({ clause, labels: descendants(part, "LabelName").map(text), selectors: descendants(binary, "VectorSelector").map(selectorOf) });
    }
  }
  return { selectors, groupings, errors };
}
