#!/usr/bin/python3
"""An OAuth2 authorization server (client credentials grant) and a webhook receiver that accepts
only its bearer tokens, in one process, for test/226_oauth2.sh (stdlib only, 127.0.0.1).

  POST /token   grant_type=client_credentials; the client authenticates with HTTP Basic
                (client_secret_basic) as --client-id/--client-secret, else 401 invalid_client.
                Answers {"access_token", "token_type": "Bearer", "expires_in"}; 503 while "down".
  POST /hook    needs "Authorization: Bearer <token>" with a token issued here, not revoked and
                not expired (issued + expires_in + 1 s of leeway for clock skew, as resource
                servers allow; the worker stops using a token before issued + expires_in); else
                401. Answers 204 and logs the events' ids.
  POST /_control  {"expires_in": N, "down": bool, "revoke": true}: tokens issued from now on live N
                s; the token endpoint answers 503 or not; every token issued so far is revoked.
  GET /_stats   {"token_requests", "tokens_issued", "hook_by_status", "event_ids", "tokens"}
"""

import argparse
import base64
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LEEWAY_S = 1.0
lock = threading.Lock()
state = {"expires_in": 3600, "down": False, "token_requests": 0, "tokens": {}, "revoked": set(),
         "hook_by_status": {}, "event_ids": [], "bad_requests": []}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _answer(self, status, body=b"", content_type="application/json"):
        self.send_response(status)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        if self.path == "/_stats":
            with lock:
                out = {"token_requests": state["token_requests"], "tokens_issued": len(state["tokens"]),
                       "hook_by_status": state["hook_by_status"], "event_ids": state["event_ids"],
                       "tokens": list(state["tokens"]), "bad_requests": state["bad_requests"]}
            return self._answer(200, json.dumps(out).encode())
        self._answer(404)

    def do_POST(self):
        body = self._body()
        path = self.path.split("?", 1)[0]
        if path == "/_control":
            spec = json.loads(body)
            with lock:
                if "expires_in" in spec:
                    state["expires_in"] = int(spec["expires_in"])
                if "down" in spec:
                    state["down"] = bool(spec["down"])
                if spec.get("revoke"):
                    state["revoked"].update(state["tokens"])
            return self._answer(200, b"{}")
        if path == "/token":
            return self._token(body)
        if path == "/hook":
            return self._hook(body)
        self._answer(404)

    def _token(self, body):
        with lock:
            state["token_requests"] += 1
            if state["down"]:
                return self._answer(503, b'{"error":"temporarily_unavailable"}')
        form = urllib.parse.parse_qs(body.decode(), keep_blank_values=True)
        auth = self.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(
            f"{urllib.parse.quote_plus(args.client_id)}:{urllib.parse.quote_plus(args.client_secret)}".encode()).decode()
        problems = []
        if self.headers.get("Content-Type") != "application/x-www-form-urlencoded":
            problems.append("content type " + str(self.headers.get("Content-Type")))
        if form.get("grant_type") != ["client_credentials"]:
            problems.append("grant_type")
        if args.scope and form.get("scope") != [args.scope]:
            problems.append("scope " + str(form.get("scope")))
        if "client_secret" in form:
            problems.append("client_secret in the body")
        if auth != expected:
            with lock:
                state["bad_requests"].append("token: bad client authentication")
            return self._answer(401, b'{"error":"invalid_client","error_description":"bad client credentials"}')
        if problems:
            with lock:
                state["bad_requests"].append("token: " + ", ".join(problems))
            return self._answer(400, b'{"error":"invalid_request"}')
        token = secrets.token_urlsafe(24)
        with lock:
            expires_in = state["expires_in"]
            state["tokens"][token] = time.monotonic() + expires_in + LEEWAY_S
        self._answer(200, json.dumps({"access_token": token, "token_type": "Bearer",
                                      "expires_in": expires_in}).encode())

    def _hook(self, body):
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        with lock:
            ok = (token in state["tokens"] and token not in state["revoked"]
                  and time.monotonic() < state["tokens"][token])
            status = 204 if ok else 401
            state["hook_by_status"][str(status)] = state["hook_by_status"].get(str(status), 0) + 1
            if ok:
                state["event_ids"].extend(e["id"] for e in json.loads(body)["events"])
        if ok:
            return self._answer(204)
        self._answer(401, b'{"error":"invalid_token"}')


parser = argparse.ArgumentParser()
parser.add_argument("--port-file", required=True)
parser.add_argument("--client-id", required=True)
parser.add_argument("--client-secret", required=True)
parser.add_argument("--scope", default="")
args = parser.parse_args()
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(args.port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os  # noqa: E402
os.rename(args.port_file + ".tmp", args.port_file)
server.serve_forever()
