// A minimal uwsgid exec worker in Node.js (no packages): serves HTTP on every listener
// passed by the systemd protocol and drains on SIGTERM.
//
// Node's standard library cannot send Unix datagrams, so this program never says READY=1:
// run it with a readiness grace instead, e.g.
//   uwsgid --http-socket :8000 --processes 2 --worker-ready-timeout 2 \
//          --worker-exec 'node listenfd-server.js'
'use strict';
const http = require('http');

if (process.env.LISTEN_PID !== String(process.pid)) {
  console.error(`listenfd-server: LISTEN_PID=${process.env.LISTEN_PID} is not my pid ${process.pid}`);
  process.exit(1);
}
const count = Number.parseInt(process.env.LISTEN_FDS, 10);
if (!(count > 0)) {
  console.error(`listenfd-server: LISTEN_FDS=${process.env.LISTEN_FDS}: no listeners`);
  process.exit(1);
}
const names = (process.env.LISTEN_FDNAMES || '').split(':');
// Taken once: child processes must not believe the fds are theirs.
delete process.env.LISTEN_PID;
delete process.env.LISTEN_FDS;
delete process.env.LISTEN_FDNAMES;

const servers = [];
for (let i = 0; i < count; i++) {
  const name = names[i] || `fd${3 + i}`;
  const server = http.createServer((req, res) => {
    const body = `Hello from Node.js, pid ${process.pid}, listener ${name}: ${req.method} ${req.url}\n`;
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
  // listen({ fd }) adopts the inherited listening socket instead of binding a new one.
  server.listen({ fd: 3 + i });
  servers.push(server);
}

// SIGTERM: stop accepting; Node (19+) closes idle keep-alive connections and the process
// exits once the requests in flight are answered.
function drain(signal) {
  console.error(`listenfd-server: ${signal}, draining`);
  for (const server of servers) server.close();
}
process.on('SIGTERM', drain);
process.on('SIGHUP', drain);
