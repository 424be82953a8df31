// bench/db.sh's Node.js peer: fastify with a pg Pool, node:cluster with one worker process
// per core, serving the database routes of examples/techempower/app.lua with the same SQL
// (named, so prepared once per connection, as troupe prepares them).
//   TROUPE_PG_URL=postgresql://... [NODE_PG_POOL_MAX=10] node bench/node/db/app.js PORT [HOST]
// Queries of one request run concurrently (Promise.all), the idiomatic form in Node: a
// pooled connection runs one query at a time and the pool hands out up to
// NODE_PG_POOL_MAX connections per process.
'use strict';
const cluster = require('node:cluster');
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
  const fastify = require('fastify')({ logger: false });
  const { Pool } = require('pg');
  const pool = new Pool({
    connectionString: process.env.TROUPE_PG_URL,
    max: Number(process.env.NODE_PG_POOL_MAX || 10),
  });

  const WORLD = 'SELECT id, randomnumber FROM world WHERE id = $1';
  const FORTUNES = 'SELECT id, message FROM fortune';
  const UPDATE = 'UPDATE world SET randomnumber = v.r ' +
                 'FROM unnest($1::int[], $2::int[]) AS v(id, r) WHERE world.id = v.id';

  const randomId = () => 1 + Math.floor(Math.random() * 10000);

  const count = (v) => {
    if (Array.isArray(v)) v = v[0];
    if (typeof v !== 'string') return 1;
    const m = /^\s*([+-]?)(\d+)\s*$/.exec(v);
    if (!m || m[1] === '-') return 1;
    const n = Number(m[2]);
    return n < 1 ? 1 : n > 500 ? 500 : n;
  };

  const worldRow = async () => {
    const r = await pool.query({ name: 'world', text: WORLD, values: [randomId()] });
    const row = r.rows[0];
    return { id: row.id, randomNumber: row.randomnumber };
  };

  const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const escape = (s) => s.replace(/[&<>"']/g, (c) => ESCAPES[c]);

  fastify.addHook('onSend', (req, reply, payload, done) => {
    reply.header('Server', 'fastify');
    done(null, payload);
  });

  fastify.get('/db', async () => worldRow());

  fastify.get('/queries', async (req) => {
    const n = count(req.query.queries);
    const jobs = [];
    for (let i = 0; i < n; i++) jobs.push(worldRow());
    return Promise.all(jobs);
  });

  fastify.get('/fortunes', async (req, reply) => {
    const r = await pool.query({ name: 'fortunes', text: FORTUNES });
    const fortunes = r.rows.slice();
    fortunes.push({ id: 0, message: 'Additional fortune added at request time.' });
    fortunes.sort((a, b) => (a.message < b.message ? -1 : a.message > b.message ? 1 : 0));
    let html = '<!DOCTYPE html><html><head><title>Fortunes</title></head><body>' +
               '<table><tr><th>id</th><th>message</th></tr>';
    for (const f of fortunes) {
      html += '<tr><td>' + f.id + '</td><td>' + escape(f.message) + '</td></tr>';
    }
    html += '</table></body></html>';
    reply.header('Content-Type', 'text/html; charset=utf-8');
    return html;
  });

  fastify.get('/updates', async (req) => {
    const n = count(req.query.queries);
    const jobs = [];
    for (let i = 0; i < n; i++) jobs.push(worldRow());
    const worlds = await Promise.all(jobs);
    const chosen = new Map();
    for (const w of worlds) {
      let r = chosen.get(w.id);
      if (r === undefined) {
        r = 1 + Math.floor(Math.random() * 9999);
        if (r >= w.randomNumber) r += 1;
        chosen.set(w.id, r);
      }
      w.randomNumber = r;
    }
    const ids = [...chosen.keys()].sort((a, b) => a - b);
    const numbers = ids.map((id) => chosen.get(id));
    for (let attempt = 1; ; attempt++) {
      try {
        await pool.query({ name: 'update', text: UPDATE, values: [ids, numbers] });
        break;
      } catch (e) {
        if (e.code !== '40P01' || attempt === 3) throw e;
      }
    }
    return worlds;
  });

  fastify.get('/plaintext', async (req, reply) => {
    reply.header('Content-Type', 'text/plain');
    return 'Hello, World!';
  });

  fastify.listen({ port, host }).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
