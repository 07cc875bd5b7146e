#!/usr/bin/env python3
"""A faulty S3 store for the tests: an HTTP proxy on 127.0.0.1 in front of s3s-fs that injects
faults, so that walship meets them against a real server.

  s3proxy.py LISTEN_PORT UPSTREAM_PORT MODE [N]

MODE:
  throttle N  the first N requests get 503 SlowDown (what S3 answers when throttling)
  lie         a 412 Precondition Failed from the store is turned into 200 OK: a store that
              ignores If-None-Match and overwrites (the upstream did not, so nothing is lost)

Requests are forwarded unchanged (the SigV4 signature covers the Host header, which stays the
proxy's, as the client signed it). Prints "ready" once it listens.
"""
import http.client
import http.server
import sys
import threading

listen, upstream, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
budget = [int(sys.argv[4]) if len(sys.argv) > 4 else 0]
lock = threading.Lock()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def handle_any(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if mode == "throttle":
            with lock:
                fail = budget[0] > 0
                budget[0] -= 1 if fail else 0
            if fail:
                msg = b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                self.wfile.write(msg)
                return
        conn = http.client.HTTPConnection("127.0.0.1", upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items()}
        conn.request(self.command, self.path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        status = resp.status
        lied = mode == "lie" and status == 412
        if lied:
            status, data = 200, b""
        self.send_response(status)
        for k, v in resp.getheaders():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-type"):
                self.send_header(k, v)
        if lied:
            self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", listen), Proxy)
print("ready", flush=True)
server.serve_forever()
