#!/usr/bin/env node
// receiver.js on the official Standard Webhooks library (npm package `standardwebhooks`,
// https://github.com/standard-webhooks/standard-webhooks) instead of its own signature check:
// Webhook#verify checks the signature over the raw body and the timestamp (5 minutes either
// way). The rest is receiver.js's serve(): events deduplicated on their id (pg_sync delivers at
// least once), applied in body order, 2xx only once stored, 401 for a request that does not
// verify (docs/receivers.md).
//
//   npm install                    # here (package.json): installs standardwebhooks
//   node standardwebhooks_receiver.js --port 8080 --secret whsec_... --applied applied.jsonl
'use strict';
const { Webhook } = require('standardwebhooks');
const { serve, arg } = require('./receiver.js');

const webhook = new Webhook(arg('secret')); // the endpoint's secret as given to pg_sync: whsec_<base64>
serve(Number(arg('port', 8080)), arg('applied', 'applied.jsonl'), (headers, body) => webhook.verify(body, headers));
