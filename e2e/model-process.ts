// The model container of the e2e pod, run as its own process inside the pod's network namespace:
// the fake vLLM (HTTP, OpenAI-compatible) on 0.0.0.0:8000 and the fake Triton (KServe v2 gRPC) on
// 0.0.0.0:8001, as a Triton image serves both.
//
//   tsx e2e/model-process.ts --leak SECRET
//
// Each port is a TCP tap in front of the fake server (which listens on an ephemeral loopback port):
// the tap writes who connected and every byte that arrived, as JSON lines on stdout
//   {"event":"conn","id":1,"port":8000,"remote":"127.0.0.1"}
//   {"event":"data","id":1,"port":8000,"b64":"…"}
// so the test can prove what reached the model (never the attack text) and from where (only the
// sidecar over loopback, never the client directly). `listening` is printed once both ports are up.
//
// Replies: HTTP chat answers "The capital of France is Paris." unless the request carries
// `x-fake-script: leak`, which answers with the --leak secret; gRPC ModelInfer echoes its text_input
// unless the prompt mentions "deploy", which answers with the secret.
import net from 'node:net';
import { startFakeTriton, inputText } from '../testing/fake-triton.js';
import { startFakeVllm } from '../testing/fake-vllm.js';

const arg = (name: string): string | undefined => {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
};
const secret = arg('--leak') ?? '';
const write = (o: object): boolean => process.stdout.write(JSON.stringify(o) + '\n');

const vllm = await startFakeVllm({
  host: '127.0.0.1',
  record: false,
  defaultScript: { text: 'The capital of France is Paris.' },
});
vllm.define('leak', { text: `Sure. The deploy key is ${secret}, keep it safe.` });
const triton = await startFakeTriton({
  host: '127.0.0.1',
  script: (req) => {
    const prompt = inputText(req) ?? '';
    return { chunks: [/deploy/i.test(prompt) ? `The deploy key is ${secret}.` : prompt] };
  },
});

let seq = 0;
function tap(port: number, backend: number): Promise<net.Server> {
  const server = net.createServer((client) => {
    const id = ++seq;
    write({ event: 'conn', id, port, remote: client.remoteAddress?.replace(/^::ffff:/, '') });
    const upstream = net.connect(backend, '127.0.0.1');
    client.on('data', (d: Buffer) => write({ event: 'data', id, port, b64: d.toString('base64') }));
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '0.0.0.0', () => resolve(server));
  });
}

const servers = [await tap(8000, vllm.port), await tap(8001, triton.port)];
write({ event: 'listening' });

const stop = (): void => {
  for (const s of servers) s.close();
  void Promise.all([vllm.close(), triton.close()]).then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
