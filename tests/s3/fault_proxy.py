#!/usr/bin/python3
"""An HTTP fault proxy in front of the test S3 server.

Forwards every request unchanged (the Host header too, so SigV4
signatures still verify upstream) and, for a share of them chosen by a
seeded random generator, injects a fault instead:
  503      503 SlowDown, without forwarding
  500      500 InternalError, without forwarding
  reset    the connection is closed without an answer
  truncate forwarded, but only half the answer's body is sent
  408      408 RequestTimeout, without forwarding
  stall    nothing is answered for `stall_seconds`, then the connection
           closes (the client's stall timeout must give up first)
Counts of each fault are kept for the test (FaultProxy.counts). A test
may also pass `rule(method, target)`, which names the fault for a request
(or None) before the random draw: a chosen request's answer is lost.
"""
import http.client, random, socket, socketserver, threading, time

FAULTS = ("503", "500", "reset", "truncate", "408", "stall")


class FaultProxy:
    def __init__(self, upstream_host, upstream_port, rate=0.2, seed=1, stall_seconds=6, rule=None):
        self.upstream = (upstream_host, upstream_port)
        self.rule = rule
        self.stall_seconds = stall_seconds
        self.rate = rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.counts = {f: 0 for f in FAULTS}
        self.requests = 0
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                while proxy.serve_one(self.rfile, self.wfile, self.connection):
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def pick_fault(self, method="", target=""):
        with self.lock:
            self.requests += 1
            chosen = self.rule(method, target) if self.rule else None
            if chosen:
                self.counts[chosen] += 1
                return chosen
            if self.random.random() >= self.rate:
                return None
            fault = self.random.choice(FAULTS)
            self.counts[fault] += 1
            return fault

    def serve_one(self, rfile, wfile, conn):
        line = rfile.readline()
        if not line:
            return False
        method, target, _ = line.decode("latin-1").split(" ", 2)
        headers = []
        length = 0
        while True:
            h = rfile.readline().decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            name, value = h.split(":", 1)
            headers.append((name, value.strip()))
            if name.lower() == "content-length":
                length = int(value)
        expect = any(n.lower() == "expect" for n, v in headers)
        if expect:
            wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            wfile.flush()
        body = rfile.read(length) if length else b""
        fault = self.pick_fault(method, target)
        if fault == "reset":
            conn.shutdown(socket.SHUT_RDWR)
            return False
        if fault == "stall":
            time.sleep(self.stall_seconds)
            conn.shutdown(socket.SHUT_RDWR)
            return False
        if fault in ("503", "500", "408"):
            code, reason = {"503": ("SlowDown", "Slow Down"), "500": ("InternalError", "Internal Error"),
                            "408": ("RequestTimeout", "Request Timeout")}[fault]
            text = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code><Message>injected</Message></Error>"
                    % code).encode()
            wfile.write(("HTTP/1.1 %s %s\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n"
                         % (fault, reason, len(text))).encode() + text)
            wfile.flush()
            return True
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        for name, value in headers:
            if name.lower() != "expect":
                upstream.putheader(name, value)
        upstream.endheaders(body if body else None)
        response = upstream.getresponse()
        data = response.read()
        upstream.close()
        head = "HTTP/1.1 %d %s\r\n" % (response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                head += "%s: %s\r\n" % (name, value)
        head += "Content-Length: %d\r\n\r\n" % len(data)
        if fault == "truncate" and len(data) > 1:
            wfile.write(head.encode() + data[: len(data) // 2])
            wfile.flush()
            conn.shutdown(socket.SHUT_RDWR)
            return False
        wfile.write(head.encode() + data)
        wfile.flush()
        return True

    def close(self):
        self.server.shutdown()
