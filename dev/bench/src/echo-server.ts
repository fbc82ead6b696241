import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { ECHO_PROTO, ECHO_READY_LINE } from "./echo.js";

/*
 * The benchmark's baseline: a raw @grpc/grpc-js unary echo server, loaded
 * with @grpc/proto-loader, without nice-grpc, middleware, telemetry or
 * logging. What ghz gets out of it on this machine is the most one gRPC hop
 * in Node can do here, so every service's figure is reported against it.
 *
 *   node dev/bench/dist/echo-server.js <port>
 *
 * Prints "listening <port>" once it accepts calls; SIGTERM stops it.
 */

interface EchoMessage {
  payload: string;
}

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  process.stderr.write("usage: echo-server.js <port>\n");
  process.exit(2);
}

const definition = protoLoader.loadSync(ECHO_PROTO, { keepCase: true, defaults: true });
const loaded = grpc.loadPackageDefinition(definition) as unknown as {
  bench: { echo: { v1: { EchoService: grpc.ServiceClientConstructor } } };
};
const server = new grpc.Server();
server.addService(loaded.bench.echo.v1.EchoService.service, {
  Echo(call: grpc.ServerUnaryCall<EchoMessage, EchoMessage>, callback: grpc.sendUnaryData<EchoMessage>) {
    callback(null, { payload: call.request.payload });
  },
});
server.bindAsync(`127.0.0.1:${port}`, grpc.ServerCredentials.createInsecure(), (error) => {
  if (error) {
    process.stderr.write(`echo-server: ${error.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${ECHO_READY_LINE} ${port}\n`);
});
process.once("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
