#!/usr/bin/env python3
"""A stand-in for your service behind `jwt-server --upstream`: it answers
every request with who called it, as the gateway's identity headers say.

    python3 examples/whoami.py [PORT]      # default 3000, loopback only

Only the gateway may reach a service that trusts these headers: bind it to
loopback (as here) or a private network, never to where clients can call
it directly.
"""

import base64
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WhoAmI(BaseHTTPRequestHandler):
    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        claims = self.headers.get("X-Jose-Binding-Claims")
        if claims:
            claims = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
        body = json.dumps(
            {
                "method": self.command,
                "path": self.path,
                "client_id": self.headers.get("X-Jose-Binding-Client-Id"),
                "form": self.headers.get("X-Jose-Binding-Form"),
                "claims": claims,
                "forwarded_for": self.headers.get("X-Forwarded-For"),
                "request_id": self.headers.get("X-Request-Id"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    print(f"whoami listening on http://127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), WhoAmI).serve_forever()
