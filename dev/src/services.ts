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
  /** Created in the local Postgres if missing. */
  database: string;
  /** Service-specific variables, on top of the shared contract (see serviceEnv). */
  env: Readonly<Record<string, string>>;
}

/**
 * Every service's fixed local ports, including those of services without a
 * row yet, so that nothing else claims them meanwhile.
 */
export const localPorts = {
  storefront: { grpc: 50050, admin: 9050 },
  order: { grpc: 50051, admin: 9051 },
  payment: { grpc: 50052, admin: 9052 },
  inventory: { grpc: 50053, admin: 9053 },
} as const;

/** Not 5432, which a Postgres the developer runs anyway is likely to hold. */
export const devPostgresPort = 5433;

export const localServices: readonly LocalService[] = [
  {
    name: "inventory",
    entry: "services/inventory/dist/main.js",
    grpcPort: localPorts.inventory.grpc,
    adminPort: localPorts.inventory.admin,
    database: "meshcart_inventory",
    env: { INVENTORY_SEED_CATALOGUE: "true" },
  },
  {
    name: "payment",
    entry: "services/payment/dist/main.js",
    grpcPort: localPorts.payment.grpc,
    adminPort: localPorts.payment.admin,
    database: "meshcart_payment",
    env: {},
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
  },
];

export interface RunContext {
  databaseUrl: string;
  logLevel: string;
}

/** The environment a row runs with: the variables every service reads, then the row's own. */
export function serviceEnv(service: LocalService, context: RunContext): Record<string, string> {
  return {
    GRPC_PORT: String(service.grpcPort),
    ADMIN_PORT: String(service.adminPort),
    DATABASE_URL: context.databaseUrl,
    LOG_LEVEL: context.logLevel,
    SERVICE_VERSION: "dev",
    DEPLOYMENT_ENVIRONMENT: "local",
    ...service.env,
  };
}
