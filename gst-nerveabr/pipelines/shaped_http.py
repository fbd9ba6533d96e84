#!/usr/bin/env python3
"""Serve a directory on 127.0.0.1 with each response paced by a two-column bandwidth trace
(seconds, Mbit/s), as the live test's server does (gst-nerveabr/tests/live_dash.rs).

usage: shaped_http.py DIR TRACE [--port 8080] [--start 210] [--time-scale 2] [--gain 2.5]
"""
import argparse
import http.server
import os
import threading
import time

p = argparse.ArgumentParser()
p.add_argument("dir")
p.add_argument("trace")
p.add_argument("--port", type=int, default=8080)
p.add_argument("--start", type=float, default=210.0, help="trace second to start from")
p.add_argument("--time-scale", type=float, default=2.0, help="trace seconds per wall second")
p.add_argument("--gain", type=float, default=2.5, help="throughput multiplier")
a = p.parse_args()

rows = [tuple(map(float, l.split()[:2])) for l in open(a.trace) if l.strip()]
t_first = rows[0][0]
trace = [(t - t_first - a.start, m * 1e6 * a.gain) for t, m in rows if t - t_first >= a.start]
t0 = time.monotonic()


def rate():
    t = (time.monotonic() - t0) * a.time_scale
    r = trace[0][1]
    for x, b in trace:
        if x > t:
            break
        r = b
    return r


class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, *args, **kw):
        super().__init__(*args, directory=a.dir, **kw)

    def copyfile(self, src, dst):
        data = src.read()
        sent, credit = 0, 0.0
        while sent < len(data):
            credit += rate() / 8 * 0.01
            n = min(int(credit), len(data) - sent)
            if n:
                dst.write(data[sent:sent + n])
                sent += n
                credit -= n
            time.sleep(0.01)

    def log_message(self, fmt, *args):
        print(f"{time.monotonic() - t0:6.1f}s {rate() / 1e6:5.2f} Mbit/s  {fmt % args}", flush=True)


srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
print(f"serving {os.path.abspath(a.dir)} on http://127.0.0.1:{a.port}/ shaped by {a.trace}", flush=True)
threading.Thread(target=srv.serve_forever, daemon=True).start()
try:
    while True:
        time.sleep(1)
except KeyboardInterrupt:
    srv.shutdown()
