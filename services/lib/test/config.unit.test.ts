import { describe, expect, it } from "vitest";
import { ConfigError, boolean, databaseConfig, integer, loadConfig, port, postgresUrl, serviceConfig, text } from "../src/config.js";

/** The ConfigError a load throws; fails the test when nothing is thrown. */
function configError(load: () => unknown): ConfigError {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error("expected a ConfigError, but the configuration loaded");
}

describe("loadConfig", () => {
  it("applies every default of the service variables when nothing is set", () => {
    expect(loadConfig(serviceConfig, {})).toEqual({
      GRPC_PORT: 50051,
      ADMIN_PORT: 9090,
      LOG_LEVEL: "info",
      SERVICE_VERSION: "dev",
      DEPLOYMENT_ENVIRONMENT: "local",
      GRPC_MAX_MESSAGE_BYTES: 1024 * 1024,
      SHUTDOWN_DRAIN_DELAY_MS: 0,
      SHUTDOWN_TIMEOUT_MS: 10_000,
    });
  });

  it("parses set values into their types", () => {
    const config = loadConfig(serviceConfig, {
      GRPC_PORT: "6000",
      ADMIN_PORT: "6001",
      LOG_LEVEL: "debug",
      SERVICE_VERSION: "v1.2.3",
      DEPLOYMENT_ENVIRONMENT: "staging",
      GRPC_MAX_MESSAGE_BYTES: "131072",
      SHUTDOWN_DRAIN_DELAY_MS: "5000",
      SHUTDOWN_TIMEOUT_MS: "100",
    });
    expect(config).toEqual({
      GRPC_PORT: 6000,
      ADMIN_PORT: 6001,
      LOG_LEVEL: "debug",
      SERVICE_VERSION: "v1.2.3",
      DEPLOYMENT_ENVIRONMENT: "staging",
      GRPC_MAX_MESSAGE_BYTES: 131072,
      SHUTDOWN_DRAIN_DELAY_MS: 5000,
      SHUTDOWN_TIMEOUT_MS: 100,
    });
  });

  it("reads only the declared variables and ignores the rest of the environment", () => {
    const config = loadConfig({ ONLY: text() }, { ONLY: "x", OTHER: "y", PATH: "/bin" });
    expect(config).toEqual({ ONLY: "x" });
  });

  it("reads process.env when no environment is given", () => {
    const name = "MESHCART_LIB_TEST_CONFIG_VARIABLE";
    process.env[name] = "from-process";
    try {
      expect(loadConfig({ [name]: text() })).toEqual({ [name]: "from-process" });
    } finally {
      delete process.env[name];
    }
  });

  it("treats an empty variable as unset, so the default applies", () => {
    const config = loadConfig(serviceConfig, {
      GRPC_PORT: "",
      LOG_LEVEL: "",
      SERVICE_VERSION: "",
      SHUTDOWN_TIMEOUT_MS: "",
    });
    expect(config.GRPC_PORT).toBe(50051);
    expect(config.LOG_LEVEL).toBe("info");
    expect(config.SERVICE_VERSION).toBe("dev");
    expect(config.SHUTDOWN_TIMEOUT_MS).toBe(10_000);
  });

  it("reports an empty required variable as not set", () => {
    const error = configError(() => loadConfig(databaseConfig, { DATABASE_URL: "" }));
    expect(error.problems).toEqual(["DATABASE_URL: must be set to a postgres:// URL (not set)"]);
  });

  it("lists every problem at once, each naming its variable and what it got", () => {
    const error = configError(() =>
      loadConfig(
        { ...serviceConfig, ...databaseConfig },
        {
          GRPC_PORT: "abc",
          ADMIN_PORT: "70000",
          LOG_LEVEL: "loud",
          GRPC_MAX_MESSAGE_BYTES: "12.5",
          SHUTDOWN_TIMEOUT_MS: "10",
          DB_POOL_MAX: "0",
          // DATABASE_URL left unset
        },
      ),
    );
    expect(error.name).toBe("ConfigError");
    const byVariable = new Map(error.problems.map((p) => [p.slice(0, p.indexOf(":")), p]));
    expect([...byVariable.keys()].sort()).toEqual(
      ["ADMIN_PORT", "DATABASE_URL", "DB_POOL_MAX", "GRPC_MAX_MESSAGE_BYTES", "GRPC_PORT", "LOG_LEVEL", "SHUTDOWN_TIMEOUT_MS"].sort(),
    );
    expect(error.problems).toHaveLength(7);
    expect(byVariable.get("GRPC_PORT")).toBe('GRPC_PORT: must be an integer from 1 to 65535 (got "abc")');
    expect(byVariable.get("ADMIN_PORT")).toBe('ADMIN_PORT: must be an integer from 1 to 65535 (got "70000")');
    expect(byVariable.get("LOG_LEVEL")).toBe('LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent (got "loud")');
    expect(byVariable.get("GRPC_MAX_MESSAGE_BYTES")).toBe(`GRPC_MAX_MESSAGE_BYTES: must be an integer from 65536 to ${64 * 1024 * 1024} (got "12.5")`);
    expect(byVariable.get("SHUTDOWN_TIMEOUT_MS")).toBe('SHUTDOWN_TIMEOUT_MS: must be an integer from 100 to 120000 (got "10")');
    expect(byVariable.get("DB_POOL_MAX")).toBe('DB_POOL_MAX: must be an integer from 1 to 100 (got "0")');
    expect(byVariable.get("DATABASE_URL")).toBe("DATABASE_URL: must be set to a postgres:// URL (not set)");

    // The message is the list a person reads in the pod's log.
    expect(error.message.split("\n")[0]).toBe("invalid configuration:");
    for (const problem of error.problems) expect(error.message).toContain(`\n  - ${problem}`);
  });
});

describe("variable kinds", () => {
  it("integer: whole numbers within bounds, with and without a default", () => {
    const shape = { N: integer(1, 10, 5) };
    expect(loadConfig(shape, {}).N).toBe(5);
    expect(loadConfig(shape, { N: "1" }).N).toBe(1);
    expect(loadConfig(shape, { N: "10" }).N).toBe(10);
    for (const bad of ["0", "11", "-3", "2.5", "ten", "NaN"]) {
      expect(configError(() => loadConfig(shape, { N: bad })).problems).toEqual([`N: must be an integer from 1 to 10 (got ${JSON.stringify(bad)})`]);
    }
    expect(configError(() => loadConfig({ N: integer(1, 10) }, {})).problems).toEqual(["N: must be an integer from 1 to 10 (not set)"]);
  });

  it("port: 1 to 65535", () => {
    const shape = { P: port(8080) };
    expect(loadConfig(shape, {}).P).toBe(8080);
    expect(loadConfig(shape, { P: "65535" }).P).toBe(65535);
    expect(configError(() => loadConfig(shape, { P: "0" })).problems).toEqual(['P: must be an integer from 1 to 65535 (got "0")']);
    expect(configError(() => loadConfig(shape, { P: "65536" })).problems).toEqual(['P: must be an integer from 1 to 65535 (got "65536")']);
  });

  it("boolean: true/false/1/0 only, with its default", () => {
    expect(loadConfig({ B: boolean(false) }, {}).B).toBe(false);
    expect(loadConfig({ B: boolean(true) }, {}).B).toBe(true);
    expect(loadConfig({ B: boolean(true) }, { B: "" }).B).toBe(true);
    expect(loadConfig({ B: boolean(false) }, { B: "true" }).B).toBe(true);
    expect(loadConfig({ B: boolean(false) }, { B: "1" }).B).toBe(true);
    expect(loadConfig({ B: boolean(true) }, { B: "false" }).B).toBe(false);
    expect(loadConfig({ B: boolean(true) }, { B: "0" }).B).toBe(false);
    for (const bad of ["yes", "TRUE", "on", "2"]) {
      expect(configError(() => loadConfig({ B: boolean(false) }, { B: bad })).problems).toEqual([`B: must be "true" or "false" (got ${JSON.stringify(bad)})`]);
    }
  });

  it("text: a non-empty string, required unless it has a default", () => {
    expect(loadConfig({ T: text("fallback") }, {}).T).toBe("fallback");
    expect(loadConfig({ T: text() }, { T: "value" }).T).toBe("value");
    const problems = configError(() => loadConfig({ T: text() }, { T: "" })).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^T: .+ \(not set\)$/);
  });

  it("postgresUrl: postgres:// or postgresql:// only", () => {
    expect(loadConfig({ U: postgresUrl() }, { U: "postgres://u:p@db:5432/x" }).U).toBe("postgres://u:p@db:5432/x");
    expect(loadConfig({ U: postgresUrl() }, { U: "postgresql://db/x" }).U).toBe("postgresql://db/x");
    for (const bad of ["mysql://db/x", "postgres://", "db:5432", "http://postgres://x"]) {
      expect(configError(() => loadConfig({ U: postgresUrl() }, { U: bad })).problems).toEqual([`U: must be a postgres:// URL (got ${JSON.stringify(bad)})`]);
    }
  });

  it("database variables: defaults and bounds", () => {
    expect(loadConfig(databaseConfig, { DATABASE_URL: "postgres://localhost/x" })).toEqual({
      DATABASE_URL: "postgres://localhost/x",
      DB_POOL_MAX: 10,
      DB_STATEMENT_TIMEOUT_MS: 5_000,
      DB_HEALTH_INTERVAL_MS: 1_000,
    });
  });
});
