#!/usr/bin/python3
"""A real S3-compatible server on 127.0.0.1 for tidemark's tests.

OpenStack Swift (Debian packages) with its s3api middleware: it verifies
SigV4 signatures and payload hashes and supports multipart uploads,
ListObjectsV2 pagination and bucket versioning. Everything lives under one
directory (configs, rings, object data on a filesystem with user xattrs,
pid files, logs), on private ports, so nothing touches /etc/swift.

    swift_server.py start DIR   -> prints the endpoint, e.g. http://127.0.0.1:38080
    swift_server.py stop DIR
    swift_server.py down DIR    (stop the proxy: connections refused)
    swift_server.py up DIR      (start it again on the same port)

Credentials: access key test:tester, secret testing, region us-east-1.
A second proxy serves HTTPS with a self-signed certificate for 127.0.0.1:
its URL is in DIR/endpoint-tls, the certificate (the CA to trust) in
DIR/ca.pem.
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"
REGION = "us-east-1"

PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats "
            "s3api tempauth copy slo dlo versioned_writes symlink proxy-logging proxy-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def server_conf(base, port, kind):
    return f"""[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {base}/etc
devices = {base}/srv
mount_check = false
log_name = {kind}
log_level = WARNING
log_address = /dev/null

[pipeline:main]
pipeline = {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}

[{kind}-replicator]
[{kind}-updater]
[{kind}-auditor]
"""


def proxy_conf(base, port, memcached_port):
    return f"""[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {base}/etc
log_name = proxy
log_level = WARNING
log_address = /dev/null

[pipeline:main]
pipeline = {PIPELINE}

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true
allow_object_versioning = true

[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:{memcached_port}
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:s3api]
use = egg:swift#s3api
location = {REGION}
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = {SECRET_KEY} .admin
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
allow_object_versioning = true
[filter:symlink]
use = egg:swift#symlink
"""


def tls_proxy_conf(base, plain_conf, port):
    conf = plain_conf.replace("bind_port = ", "bind_port = %d\n#" % port, 1)
    return conf.replace("[DEFAULT]\n", "[DEFAULT]\ncert_file = %s/ca.pem\nkey_file = %s/etc/tls.key\n" % (base, base), 1)


def make_certificate(base):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7",
                    "-keyout", os.path.join(base, "etc", "tls.key"), "-out", os.path.join(base, "ca.pem"),
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def build_rings(etc, ports):
    from swift.common.ring import RingBuilder
    for kind in ("account", "container", "object"):
        builder = RingBuilder(6, 1, 1)
        builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
                         "port": ports[kind], "device": "d1", "weight": 100})
        builder.rebalance()
        builder.get_ring().save(os.path.join(etc, f"{kind}.ring.gz"))


def spawn(base, name, argv):
    log = open(os.path.join(base, "log", name + ".log"), "ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    write(os.path.join(base, "run", name + ".pid"), str(proc.pid))
    return proc


def start(base):
    base = os.path.abspath(base)
    for sub in ("etc", "srv/d1", "run", "log"):
        os.makedirs(os.path.join(base, sub), exist_ok=True)
    ports = {k: free_port() for k in ("account", "container", "object", "proxy", "proxy-tls", "memcached")}
    etc = os.path.join(base, "etc")
    write(os.path.join(etc, "swift.conf"),
          "[swift-hash]\nswift_hash_path_suffix = tidemark-tests\nswift_hash_path_prefix = tidemark\n\n"
          "[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
    for kind in ("account", "container", "object"):
        write(os.path.join(etc, f"{kind}-server.conf"), server_conf(base, ports[kind], kind))
    plain = proxy_conf(base, ports["proxy"], ports["memcached"])
    write(os.path.join(etc, "proxy-server.conf"), plain)
    make_certificate(base)
    write(os.path.join(etc, "proxy-tls.conf"), tls_proxy_conf(base, plain, ports["proxy-tls"]))
    build_rings(etc, ports)
    spawn(base, "memcached", ["/usr/bin/memcached", "-l", "127.0.0.1", "-p", str(ports["memcached"]),
                              "-U", "0", "-u", "root" if os.getuid() == 0 else os.environ.get("USER", "nobody")])
    for kind in ("account", "container", "object", "proxy"):
        spawn(base, kind, [f"/usr/bin/swift-{kind}-server", os.path.join(etc, f"{kind}-server.conf")])
    spawn(base, "proxy-tls", ["/usr/bin/swift-proxy-server", os.path.join(etc, "proxy-tls.conf")])
    endpoint = f"http://127.0.0.1:{ports['proxy']}"
    wait_ready(base, endpoint)
    write(os.path.join(base, "endpoint"), endpoint)
    write(os.path.join(base, "endpoint-tls"), f"https://127.0.0.1:{ports['proxy-tls']}")
    print(endpoint)


def pids(base):
    run = os.path.join(base, "run")
    if not os.path.isdir(run):
        return {}
    out = {}
    for name in os.listdir(run):
        with open(os.path.join(run, name)) as f:
            out[name[:-4]] = int(f.read())
    return out


def stop(base):
    for name, pid in pids(base).items():
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.unlink(os.path.join(base, "run", name + ".pid"))


def wait_ready(base, endpoint):
    deadline = time.time() + 60
    while True:
        try:
            with urllib.request.urlopen(endpoint + "/healthcheck", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            stop(base)
            sys.exit(f"error: the S3 server did not start; see {base}/log/")
        time.sleep(0.1)


def proxy_down(base):
    pid = pids(base).get("proxy")
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.unlink(os.path.join(base, "run", "proxy.pid"))


def proxy_up(base):
    base = os.path.abspath(base)
    spawn(base, "proxy", ["/usr/bin/swift-proxy-server", os.path.join(base, "etc", "proxy-server.conf")])
    with open(os.path.join(base, "endpoint")) as f:
        wait_ready(base, f.read().strip())


def main():
    actions = {"start": start, "stop": stop, "down": proxy_down, "up": proxy_up}
    if len(sys.argv) != 3 or sys.argv[1] not in actions:
        sys.exit("usage: swift_server.py start|stop|down|up DIR")
    actions[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    main()
