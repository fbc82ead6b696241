import net from "node:net";

const loopback = "127.0.0.1";

/**
 * Test ports come from below the OS's ephemeral range (32768-60999 on Linux,
 * 49152-65535 on macOS). A port the OS handed out for `listen(0)` and that
 * was then closed is free again for the kernel's own use: any outgoing
 * connection (a pg pool, a gRPC channel) may take it as its source port
 * before the test's service binds it, and the service fails with
 * EADDRINUSE. Ports under 32768 are never picked as source ports, and the
 * documented local ports of make dev (50050-50054, 9050-9153, 5433) lie
 * outside this range too, so the README walkthrough test can run beside.
 */
const range = { first: 20_000, last: 32_000 };

/** Ports this process handed out already: never twice, even once closed again. */
const handedOut = new Set<number>();

/** A port that is free right now on 127.0.0.1 and that this process has not handed out before. */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 1_000; attempt++) {
    const port = range.first + Math.floor(Math.random() * (range.last - range.first + 1));
    if (handedOut.has(port)) continue;
    if (!(await isPortFree(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port between ${range.first} and ${range.last} after 1000 attempts`);
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
