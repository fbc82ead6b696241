import path from "node:path";
import { repoRoot } from "@meshcart/stack/paths.js";

/** The baseline's contract (echo.proto), shared by its server and the bench that loads it. */
export const ECHO_PROTO = path.join(repoRoot, "dev", "bench", "src", "echo.proto");
export const ECHO_METHOD = "bench.echo.v1.EchoService/Echo";
/** The server's first stdout line, once it accepts calls: "listening <port>". */
export const ECHO_READY_LINE = "listening";
/** The compiled server, run with this Node. */
export const ECHO_SERVER_ENTRY = path.join(repoRoot, "dev", "bench", "dist", "echo-server.js");
