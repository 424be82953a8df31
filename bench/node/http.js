// bench/http.sh's Node.js peer: node:http in cluster mode, one worker process per core,
// serving the same /json and /plaintext as examples/techempower. No npm packages.
//   node bench/node/http.js PORT [HOST]
'use strict';
const cluster = require('node:cluster');
const http = require('node:http');
const os = require('node:os');

const port = Number(process.argv[2] || 8080);
const host = process.argv[3] || '127.0.0.1';

if (cluster.isPrimary) {
  const n = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
  for (let i = 0; i < n; i++) cluster.fork();
  let stopping = false;
  const stop = () => {
    stopping = true;
    for (const id in cluster.workers) cluster.workers[id].kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  cluster.on('exit', () => {
    if (stopping && Object.keys(cluster.workers).length === 0) process.exit(0);
  });
} else {
  const server = http.createServer((req, res) => {
    if (req.url === '/json') {
      const body = JSON.stringify({ message: 'Hello, World!' });
      res.writeHead(200, {
        'Content-Type': 'application/json',
        'Content-Length': Buffer.byteLength(body),
        'Server': 'node',
      });
      res.end(body);
    } else if (req.url === '/plaintext') {
      res.writeHead(200, {
        'Content-Type': 'text/plain',
        'Content-Length': 13,
        'Server': 'node',
      });
      res.end('Hello, World!');
    } else {
      res.writeHead(404, { 'Content-Length': 0 });
      res.end();
    }
  });
  server.keepAliveTimeout = 65000;
  server.listen(port, host);
}
