#!/usr/bin/env node
// A pg_sync webhook receiver in plain Node.js (no dependencies). It verifies the Standard Webhooks
// signature (rejecting old timestamps), skips events it has already applied (pg_sync delivers at
// least once: dedupe on event id), applies a request's events in body order and answers 2xx only
// once they are stored (docs/receivers.md). "Applying" appends to a JSON-lines file.
//
//   node receiver.js --port 8080 --secret whsec_... --applied applied.jsonl
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');

const arg = (name, dflt) => {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const port = Number(arg('port', 8080));
const secret = arg('secret');
const appliedPath = arg('applied', 'applied.jsonl');
const TOLERANCE_S = 300;

function verify(headers, body) {
  const id = headers['webhook-id'], ts = headers['webhook-timestamp'], sigs = headers['webhook-signature'];
  if (!id || !ts || !sigs) throw new Error('missing webhook headers');
  if (Math.abs(Date.now() / 1000 - Number(ts)) > TOLERANCE_S) throw new Error('timestamp outside tolerance');
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const expected = Buffer.from('v1,' + crypto.createHmac('sha256', key)
    .update(`${id}.${ts}.`).update(body).digest('base64'));
  const ok = sigs.split(' ').some((s) => {
    const got = Buffer.from(s);
    return got.length === expected.length && crypto.timingSafeEqual(got, expected);
  });
  if (!ok) throw new Error('bad signature');
}

// Applied ids, rebuilt from the file at start.
const applied = new Set();
if (fs.existsSync(appliedPath)) {
  for (const line of fs.readFileSync(appliedPath, 'utf8').split('\n')) if (line) applied.add(JSON.parse(line).id);
}

function apply(events) {
  let out = '';
  for (const e of events) {            // body order = per-key commit order
    if (applied.has(e.id)) continue;   // a redelivery: already done
    out += JSON.stringify(e) + '\n';
    applied.add(e.id);
  }
  const fd = fs.openSync(appliedPath, 'a');
  fs.writeSync(fd, out);
  fs.fsyncSync(fd);                    // stored before we say 2xx
  fs.closeSync(fd);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    try {
      verify(req.headers, body);
      apply(JSON.parse(body).events);
      res.writeHead(204).end();
    } catch (e) {
      res.writeHead(401, { 'Content-Length': 0 }).end();
    }
  });
});
server.keepAliveTimeout = 60000; // keep-alive: pg_sync reuses connections
server.listen(port, '127.0.0.1');
