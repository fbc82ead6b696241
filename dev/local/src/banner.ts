import type { LocalService } from "@meshcart/stack/services.js";

export interface BannerInput {
  services: readonly LocalService[];
  /** Where the databases live, e.g. "127.0.0.1:5433  data in .data/postgres". */
  postgres: { where: string; url(database: string): string };
  /** Where the broker runs, when a service needs one. */
  nats?: { where: string };
  /** The README's grpcurl walkthrough, when there is one to show. */
  walkthrough?: string;
}

/** What `make dev` prints once everything is ready. */
export function formatBanner({ services, postgres, nats, walkthrough }: BannerInput): string {
  const width = Math.max("postgres".length, ...services.map((service) => service.name.length));
  const lines = [
    "",
    "meshcart is running. Ctrl-C stops everything.",
    "",
    `  ${"postgres".padEnd(width)}  ${postgres.where}`,
    ...(nats ? [`  ${"nats".padEnd(width)}  ${nats.where}`] : []),
    ...services.map(
      (service) =>
        `  ${service.name.padEnd(width)}  gRPC localhost:${service.grpcPort}  ` +
        `admin http://localhost:${service.adminPort}/readyz  ` +
        (service.database ? `database ${postgres.url(service.database)}` : "no database"),
    ),
  ];
  if (walkthrough) {
    lines.push(
      "",
      "Try it (the README's walkthrough; grpcurl is in .tools/bin after `make tools`):",
      "",
      ...walkthrough
        .trimEnd()
        .split("\n")
        .map((line) => (line ? `  ${line}` : "")),
    );
  }
  lines.push("", "");
  return lines.join("\n");
}
