#!/usr/bin/python3
"""Example webhook receiver for lifecycle hooks: checks the signature, answers with a result.

Policy:  hooks: [{name: cmdb, event: terminating, webhook: {url: "http://127.0.0.1:8099/hook",
                  secret_file: /etc/autoscaler/hook.secret}, timeout: 5m}]
Reply 200 {"result": "continue"|"abandon"} to decide, or 202 {"heartbeat": 30} to be asked again
in 30 s (up to the hook's timeout). Deduplicate on X-Autoscaler-Idempotency-Key.
"""

import hashlib
import hmac
import json
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

SECRET = Path("/etc/autoscaler/hook.secret").read_bytes().strip()


class Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, self.headers.get("X-Autoscaler-Signature", "")):
            self.send_response(403)
            self.end_headers()
            return
        event = json.loads(body)
        print(event["event"], event["domain"], event["address"], flush=True)
        reply = json.dumps({"result": "continue"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(reply)


HTTPServer(("127.0.0.1", 8099), Hook).serve_forever()
