#!/usr/bin/env node
// A pg_sync webhook receiver in plain Node.js (no dependencies). It verifies the Standard Webhooks
// signature (rejecting old timestamps), skips events it has already applied (pg_sync delivers at
// least once: dedupe on event id), applies a request's events in body order and answers 2xx only
// once they are stored (docs/receivers.md). "Applying" appends to a JSON-lines file.
//
//   node receiver.js --port 8080 --secret whsec_... --applied applied.jsonl
//
// serve() is exported for standardwebhooks_receiver.js, the same receiver on the official
// Standard Webhooks library instead of the verify() below.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const http = require('http');

const arg = (name, dflt) => {
  const i = process.argv.indexOf('--' + name);
  return i > 0 ? process.argv[i + 1] : dflt;
};
const TOLERANCE_S = 300;

function verify(secret, headers, body) {
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

// verifyRequest(headers, rawBody) throws unless the request is signed with the endpoint's secret.
function serve(port, appliedPath, verifyRequest) {
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
      const body = Buffer.concat(chunks); // the raw bytes: a re-serialized body would not match
      try {
        verifyRequest(req.headers, body);
      } catch (e) {
        console.error(`rejected ${req.headers['webhook-id'] || '(no webhook-id)'}: ${e.message}`);
        res.writeHead(401, { 'Content-Length': 0 }).end();
        return;
      }
      try {
        apply(JSON.parse(body).events);
        res.writeHead(204).end();
      } catch (e) {
        console.error(`not stored: ${e.message}`); // pg_sync retries on 5xx
        res.writeHead(500, { 'Content-Length': 0 }).end();
      }
    });
  });
  server.keepAliveTimeout = 60000; // keep-alive: pg_sync reuses connections
  server.listen(port, '127.0.0.1');
  return server;
}

module.exports = { serve, arg };
if (require.main === module) {
  const secret = arg('secret');
  serve(Number(arg('port', 8080)), arg('applied', 'applied.jsonl'), (headers, body) => verify(secret, headers, body));
}
