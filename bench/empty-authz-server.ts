/**
 * The baseline of the Check benchmarks: a grpc-js server on Envoy's Authorization protos (the same
 * definitions, so the same decoding and encoding) whose Check answers OK at once, doing nothing.
 * Prints its port on stdout.
 */
import * as grpc from '@grpc/grpc-js';
import { serviceDefinition } from '../src/envoy/protos.js';

const server = new grpc.Server({ 'grpc.max_receive_message_length': 32 * 1024 * 1024 });
server.addService(serviceDefinition('envoy.service.auth.v3.Authorization'), {
  Check(_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<object>) {
    callback(null, { status: { code: 0 } });
  },
});
server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) throw err;
  console.log(port);
});
