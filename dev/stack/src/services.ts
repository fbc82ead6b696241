import { DEMO_TOKENS } from "@meshcart/lib";

/**
 * The local services: the one table `make dev` and the integration tests
 * start from. Rows start in this order and stop in reverse, so a service
 * comes after the services it calls.
 */
export interface LocalService {
  name: string;
  /** Compiled entry point, relative to the repository root. */
  entry: string;
  grpcPort: number;
  /** Serves /healthz, /readyz and /metrics. */
  adminPort: number;
  /** Created in the local Postgres if missing; none for a service without one (storefront). */
  database?: string;
  /** Service-specific variables, on top of the shared contract (see serviceEnv). */
  env: Readonly<Record<string, string>>;
  /** Takes injected faults: its fault-control endpoint listens on faultControlPort(row). */
  faults?: boolean;
  /** Talks to the broker: gets NATS_URL. */
  nats?: boolean;
}

/**
 * The fault-control port of a row that takes faults: its admin port + 100
 * (make dev: payment 9152, inventory 9153; `make faults` calls them).
 */
export function faultControlPort(service: Pick<LocalService, "adminPort" | "faults">): number | undefined {
  return service.faults ? service.adminPort + 100 : undefined;
}

/**
 * Every service's fixed local ports (also kept out of the tests' free
 * ports, dev/stack/src/net.ts).
 */
export const localPorts = {
  storefront: { grpc: 50050, admin: 9050 },
  order: { grpc: 50051, admin: 9051 },
  payment: { grpc: 50052, admin: 9052 },
  inventory: { grpc: 50053, admin: 9053 },
  fulfillment: { grpc: 50054, admin: 9054 },
} as const;

/** Not 5432, which a Postgres the developer runs anyway is likely to hold. */
export const devPostgresPort = 5433;

/** Not NATS's 4222 and 8222, for the same reason: client and monitoring ports of make dev's broker. */
export const devNatsPorts = { client: 4223, monitor: 8223 } as const;

export const localServices: readonly LocalService[] = [
  {
    name: "inventory",
    entry: "services/inventory/dist/main.js",
    grpcPort: localPorts.inventory.grpc,
    adminPort: localPorts.inventory.admin,
    database: "meshcart_inventory",
    env: { INVENTORY_SEED_CATALOGUE: "true" },
    faults: true,
  },
  {
    name: "payment",
    entry: "services/payment/dist/main.js",
    grpcPort: localPorts.payment.grpc,
    adminPort: localPorts.payment.admin,
    database: "meshcart_payment",
    env: {},
    faults: true,
  },
  {
    name: "order",
    entry: "services/order/dist/main.js",
    grpcPort: localPorts.order.grpc,
    adminPort: localPorts.order.admin,
    database: "meshcart_order",
    // No mesh locally: the order service's own clients retry (the default).
    env: {
      INVENTORY_ADDRESS: `localhost:${localPorts.inventory.grpc}`,
      PAYMENT_ADDRESS: `localhost:${localPorts.payment.grpc}`,
    },
    // Its outbox relay publishes the order events.
    nats: true,
  },
  {
    name: "fulfillment",
    entry: "services/fulfillment/dist/main.js",
    grpcPort: localPorts.fulfillment.grpc,
    adminPort: localPorts.fulfillment.admin,
    database: "meshcart_fulfillment",
    env: {},
    nats: true,
  },
  {
    name: "storefront",
    entry: "services/storefront/dist/main.js",
    grpcPort: localPorts.storefront.grpc,
    adminPort: localPorts.storefront.admin,
    // The public edge owns no data.
    env: {
      ORDER_ADDRESS: `localhost:${localPorts.order.grpc}`,
      INVENTORY_ADDRESS: `localhost:${localPorts.inventory.grpc}`,
      PAYMENT_ADDRESS: `localhost:${localPorts.payment.grpc}`,
      FULFILLMENT_ADDRESS: `localhost:${localPorts.fulfillment.grpc}`,
      STOREFRONT_JWT_SECRET: DEMO_TOKENS.secret,
      STOREFRONT_JWT_ISSUER: DEMO_TOKENS.issuer,
      STOREFRONT_JWT_AUDIENCE: DEMO_TOKENS.audience,
    },
  },
];

/**
 * Traces go to a local OTLP collector (the Jaeger one-liner of docs/observability.md) when
 * one runs; without one the services say so once and drop their spans. A
 * developer's own OTEL_EXPORTER_OTLP_* (inherited) wins over these.
 */
export const localTelemetry: Readonly<Record<string, string>> = {
  OTEL_EXPORTER_OTLP_ENDPOINT: "http://localhost:4317",
  OTEL_EXPORTER_OTLP_PROTOCOL: "grpc",
  // Traces show up within a second rather than five.
  OTEL_BSP_SCHEDULE_DELAY: "1000",
};

function telemetryEnv(): Readonly<Record<string, string>> {
  const own = process.env.OTEL_EXPORTER_OTLP_ENDPOINT || process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  return own ? {} : localTelemetry;
}

export interface RunContext {
  /** The service's database; unset for a service without one. */
  databaseUrl?: string;
  /** The broker, for the rows that talk to it. */
  natsUrl?: string;
  logLevel: string;
  /** make dev's local collector settings (localTelemetry); default true. */
  telemetry?: boolean;
}

/** The environment a row runs with: the variables every service reads, then the row's own. */
export function serviceEnv(service: LocalService, context: RunContext): Record<string, string> {
  const faultPort = faultControlPort(service);
  return {
    GRPC_PORT: String(service.grpcPort),
    ADMIN_PORT: String(service.adminPort),
    ...(faultPort === undefined ? {} : { FAULT_CONTROL_PORT: String(faultPort) }),
    ...(context.databaseUrl === undefined ? {} : { DATABASE_URL: context.databaseUrl }),
    ...(service.nats && context.natsUrl !== undefined ? { NATS_URL: context.natsUrl } : {}),
    LOG_LEVEL: context.logLevel,
    SERVICE_VERSION: "dev",
    DEPLOYMENT_ENVIRONMENT: "local",
    ...(context.telemetry === false ? {} : telemetryEnv()),
    ...service.env,
  };
}
