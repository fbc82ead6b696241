import net from "node:net";

const loopback = "127.0.0.1";

/**
 * The documented local ports (make dev, the README walkthrough test) lie in
 * the OS's ephemeral range; a test that asked for any free port must never
 * be handed one of them while the walkthrough test runs beside it.
 */
const reserved = new Set([50050, 50051, 50052, 50053, 50054, 9050, 9051, 9052, 9053, 9054, 9150, 9152, 9153, 5433]);

/** A port the OS considers free right now on 127.0.0.1, never one of the documented local ports. */
export async function freePort(): Promise<number> {
  for (;;) {
    const server = net.createServer();
    await listen(server, 0);
    const address = server.address();
    await close(server);
    if (address === null || typeof address === "string") throw new Error("could not determine a free port");
    if (!reserved.has(address.port)) return address.port;
  }
}

/**
 * Whether 127.0.0.1:port can be bound. Listeners on 0.0.0.0 or a dual-stack
 * [::] also make this false, which is the point: the services and Postgres
 * bind loopback, and would collide with either.
 */
export async function isPortFree(port: number): Promise<boolean> {
  const server = net.createServer();
  try {
    await listen(server, port);
  } catch (error) {
    if (isErrno(error, "EADDRINUSE") || isErrno(error, "EACCES")) return false;
    throw error;
  }
  await close(server);
  return true;
}

export function isErrno(error: unknown, code: string): boolean {
  return error instanceof Error && (error as NodeJS.ErrnoException).code === code;
}

function listen(server: net.Server, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: loopback, port, exclusive: true }, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
}
