#!/usr/bin/python3
"""Issue 21, items 1 and 5: `make install`, `make deb` and the container
files.

The package is installed with dpkg in a real chroot, its maintainer
scripts run: the chroot is an overlay of this machine's own root (its
libraries, adduser, systemd-analyze) whose writes land in a tmpfs, made
in a private mount namespace (the test re-runs itself under
`unshare -m`), so the machine is left untouched and the overlay's upper
directory shows exactly what the install changed. The installed binary
then runs as the user the package created, replicates a small database
for about two seconds and restores it, checked exactly against the
writer's ground truth (helpers.py). Needs root (the suite runs as root);
without it, or without overlayfs, the chroot test is skipped naming why.
"""
import glob, os, re, shutil, stat, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import helpers
from helpers import ROOT, check, Failure, Skip, run_tests, verify_timeline

NAMESPACE_MARK = "TIDEMARK_PACKAGE_TEST_NS"
CONTAINER_TOOLS = ("docker", "podman", "buildah")


def enter_private_mount_namespace():
    """Re-runs this script in a mount namespace of its own (mounts vanish
    with it), when root can make one; else returns the reason it cannot."""
    if os.environ.get(NAMESPACE_MARK):
        return os.environ[NAMESPACE_MARK] if os.environ[NAMESPACE_MARK] != "1" else None
    reason = None
    if os.geteuid() != 0:
        reason = "not root: a chroot and mounts need root"
    elif not shutil.which("unshare"):
        reason = "no unshare(1) on this machine"
    elif subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True).returncode:
        reason = "unshare -m is refused here (no CAP_SYS_ADMIN?)"
    if reason:
        os.environ[NAMESPACE_MARK] = reason
        return reason
    os.environ[NAMESPACE_MARK] = "1"
    sys.stdout.flush()
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable, os.path.abspath(__file__)]
              + sys.argv[1:])


def project_version():
    with open(os.path.join(ROOT, "common/cmd_version.c")) as f:
        found = re.search(r'^#define TIDEMARK_VERSION "([^"]+)"', f.read(), re.M)
    check(found, "no TIDEMARK_VERSION in common/cmd_version.c")
    return found.group(1)


def optional_files():
    """Files of the install contract shipped only when present (other
    parts of issue 21 add them): {source in the tree: name installed}."""
    found = {}
    for page in sorted(glob.glob(os.path.join(ROOT, "docs/man/*.[15]"))):
        found[page] = "share/man/man%s/%s" % (page[-1], os.path.basename(page))
    for name in ("prometheus-rules.yml", "grafana-dashboard.json"):
        if os.path.exists(os.path.join(ROOT, "config", name)):
            found[os.path.join(ROOT, "config", name)] = "share/tidemark/" + name
    return found


def tree(top):
    """{relative path: (type and mode as `ls -l` shows it, symlink target)}
    of every file and symlink under top (directories left out)."""
    out = {}
    for d, dirs, files in os.walk(top):
        for name in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            path = os.path.join(d, name)
            st = os.lstat(path)
            kind = "l" if os.path.islink(path) else "-"
            out[os.path.relpath(path, top)] = ("%s%04o" % (kind, st.st_mode & 0o7777),
                                               os.readlink(path) if kind == "l" else None)
    return out


def make(*args, timeout=300):
    proc = subprocess.run(["make", "--no-print-directory"] + list(args), cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    check(proc.returncode == 0, "make %s failed (%d): %s" % (" ".join(args), proc.returncode, proc.stderr[-3000:]))
    return proc


# -- make install ------------------------------------------------------------

def install_into(destdir, *args):
    # -o tidemark: install the ./tidemark this suite built (a SANITIZE=1
    # run's), never rebuild it
    return make("-o", "tidemark", "install", "DESTDIR=" + destdir, *args)


def test_make_install_destdir():
    destdir = tempfile.mkdtemp(prefix="tidemark-it-install-")
    try:
        install_into(destdir)
        expected = {"usr/local/bin/tidemark": ("-0755", None),
                    "etc/tidemark/tidemark.yml": ("-0644", None),
                    "usr/local/lib/systemd/system/tidemark.service": ("-0644", None)}
        for source, name in optional_files().items():
            expected["usr/local/" + name] = ("-0644", None)
        got = tree(destdir)
        check(got == expected, "make install DESTDIR installed:\n  %s\nexpected:\n  %s"
              % ("\n  ".join("%s %s" % (v[0], k) for k, v in sorted(got.items())),
                 "\n  ".join("%s %s" % (v[0], k) for k, v in sorted(expected.items()))))
        with open(os.path.join(destdir, "usr/local/bin/tidemark"), "rb") as a, \
                open(os.path.join(ROOT, "tidemark"), "rb") as b:
            check(a.read() == b.read(), "the installed binary is not ./tidemark")
        unit = open(os.path.join(destdir, "usr/local/lib/systemd/system/tidemark.service")).read()
        check("\nExecStart=/usr/local/bin/tidemark replicate -c /etc/tidemark/tidemark.yml\n" in unit,
              "unit's ExecStart: " + "".join(l for l in unit.splitlines(True) if l.startswith("ExecStart")))
        # a second install keeps the configuration the administrator edited
        config = os.path.join(destdir, "etc/tidemark/tidemark.yml")
        with open(config, "a") as f:
            f.write("# edited\n")
        out = install_into(destdir).stdout
        check(open(config).read().endswith("# edited\n"), "make install replaced an existing tidemark.yml")
        check("kept %s" % config in out, "make install did not say it kept the configuration: " + out)
    finally:
        shutil.rmtree(destdir, ignore_errors=True)


def test_make_install_prefix_paths():
    """PREFIX, SYSCONFDIR and SYSTEMDUNITDIR move the files, and the unit
    names the binary and configuration where they went."""
    destdir = tempfile.mkdtemp(prefix="tidemark-it-install-")
    try:
        install_into(destdir, "PREFIX=/opt/tm", "SYSCONFDIR=/opt/tm/etc", "SYSTEMDUNITDIR=/etc/systemd/system")
        got = sorted(tree(destdir))
        expected = sorted(["opt/tm/bin/tidemark", "opt/tm/etc/tidemark/tidemark.yml",
                           "etc/systemd/system/tidemark.service"]
                          + ["opt/tm/" + name for name in optional_files().values()])
        check(got == expected, "installed %s, expected %s" % (got, expected))
        unit = open(os.path.join(destdir, "etc/systemd/system/tidemark.service")).read()
        settings = "".join(line for line in unit.splitlines(True) if not line.startswith("#"))
        check("\nExecStart=/opt/tm/bin/tidemark replicate -c /opt/tm/etc/tidemark/tidemark.yml\n" in settings
              and "ReadOnlyPaths=/opt/tm/etc/tidemark\n" in settings and "/usr/local" not in settings
              and "/etc/tidemark" not in settings.replace("/opt/tm/etc/tidemark", ""),
              "unit paths not rewritten: " + settings)
    finally:
        shutil.rmtree(destdir, ignore_errors=True)


# -- make deb ----------------------------------------------------------------

_deb = []

def built_deb():
    """`make deb` once; the path of the package it made."""
    if not _deb:
        make("deb")
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
        path = os.path.join(ROOT, "build/deb/tidemark_%s_%s.deb" % (project_version(), arch))
        check(os.path.exists(path), "make deb made no %s: %s" % (path, os.listdir(os.path.join(ROOT, "build/deb"))))
        _deb.append(path)
    return _deb[0]


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True, check=True).stdout.strip()


def owning_package(path):
    """The Debian package that holds library `path` (as ldd names it)."""
    candidates = [path, os.path.realpath(path)]
    candidates += ["/usr" + p for p in candidates if not p.startswith("/usr/")]
    for p in candidates:
        proc = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if proc.returncode == 0:
            return proc.stdout.split(":")[0].strip()
    raise Failure("no Debian package holds %s" % path)


def test_deb_contents_and_control():
    deb = built_deb()
    check(deb_field(deb, "Package") == "tidemark", "Package: " + deb_field(deb, "Package"))
    check(deb_field(deb, "Version") == project_version(), "Version %r, the project's is %r"
          % (deb_field(deb, "Version"), project_version()))
    listing = subprocess.run(["dpkg-deb", "-c", deb], capture_output=True, text=True, check=True).stdout
    files = {}
    for line in listing.splitlines():
        mode, owner, _, _, _, path = line.split(None, 5)
        if not mode.startswith("d"):
            files[path] = (mode, owner)
    expected = {"./usr/bin/tidemark": ("-rwxr-xr-x", "root/root"),
                "./etc/tidemark/tidemark.yml": ("-rw-r--r--", "root/root"),
                "./lib/systemd/system/tidemark.service": ("-rw-r--r--", "root/root"),
                "./usr/share/doc/tidemark/changelog.gz": ("-rw-r--r--", "root/root"),
                "./usr/share/doc/tidemark/copyright": ("-rw-r--r--", "root/root")}
    for source, name in optional_files().items():
        expected["./usr/" + name + (".gz" if name.startswith("share/man/") else "")] = ("-rw-r--r--", "root/root")
    check(files == expected, "the package holds:\n  %s\nexpected:\n  %s"
          % ("\n  ".join("%s %s %s" % (m, o, p) for p, (m, o) in sorted(files.items())),
             "\n  ".join("%s %s %s" % (m, o, p) for p, (m, o) in sorted(expected.items()))))
    control = tempfile.mkdtemp(prefix="tidemark-it-debctl-")
    try:
        subprocess.run(["dpkg-deb", "-e", deb, control], check=True)
        conffiles = open(os.path.join(control, "conffiles")).read()
        check(conffiles == "/etc/tidemark/tidemark.yml\n", "conffiles: %r" % conffiles)
        postinst = open(os.path.join(control, "postinst")).read()
        check("adduser --system --group" in postinst and "deb-systemd-helper enable 'tidemark.service'" in postinst,
              "postinst neither creates the user nor enables the unit: " + postinst)
        started = [l for l in postinst.splitlines() if re.search(r"(deb-systemd-invoke|systemctl)\S* .*\bstart\b", l)]
        check(not started, "postinst starts the unit: %s" % started)
    finally:
        shutil.rmtree(control, ignore_errors=True)


def test_deb_depends_on_the_libraries_it_links():
    """Every shared library the packaged binary loads (ldd) comes from a
    package named in Depends; and adduser for the postinst."""
    deb = built_deb()
    depends = {d.split()[0] for d in deb_field(deb, "Depends").split(",")}
    unpacked = tempfile.mkdtemp(prefix="tidemark-it-debx-")
    try:
        subprocess.run(["dpkg-deb", "-x", deb, unpacked], check=True)
        ldd = subprocess.run(["ldd", os.path.join(unpacked, "usr/bin/tidemark")], capture_output=True, text=True,
                             check=True).stdout
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)
    libraries = re.findall(r"=> (/\S+)", ldd)
    check(len(libraries) >= 8, "ldd found too few libraries: " + ldd)
    direct = subprocess.run(["objdump", "-p", os.path.join(ROOT, "tidemark")], capture_output=True, text=True)
    needed = set(re.findall(r"NEEDED\s+(\S+)", direct.stdout))
    missing = []
    for lib in libraries:
        if os.path.basename(lib) in needed and owning_package(lib) not in depends:
            missing.append("%s (%s)" % (lib, owning_package(lib)))
    check(not missing, "Depends (%s) lacks the packages of %s" % (", ".join(sorted(depends)), missing))
    for package in ("libsqlite3-0", "libsodium23", "libzstd1", "libyaml-0-2", "libcurl4", "libssl3", "libev4",
                    "libc6", "adduser"):
        check(package in depends, "Depends lacks %s: %s" % (package, sorted(depends)))


# -- the package installed in a chroot -----------------------------------------

class OverlayRoot:
    """A chroot over this machine's root: its writes land in a tmpfs
    (`upper`), the machine's files stay as they are."""
    def __init__(self):
        self.top = tempfile.mkdtemp(prefix="tidemark-it-pkgroot-")
        self.upper, work, self.root = (os.path.join(self.top, d) for d in ("upper", "work", "root"))
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", self.top], check=True)
        for d in (self.upper, work, self.root):
            os.mkdir(d)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=/,upperdir=%s,workdir=%s" % (self.upper, work), self.root], check=True)
        subprocess.run(["mount", "--rbind", "/dev", self.path("/dev")], check=True)
        subprocess.run(["mount", "-t", "proc", "proc", self.path("/proc")], check=True)

    def path(self, inside):
        return os.path.join(self.root, inside.lstrip("/"))

    def command(self, args, user=None):
        """chroot's command line; user: a name (its group of that name) or UID:GID."""
        spec = user if user is None or ":" in user else "%s:%s" % (user, user)
        return ["chroot"] + (["--userspec=" + spec] if spec else []) + [self.root] + list(args)

    def run(self, *args, user=None):
        return subprocess.run(self.command(args, user), capture_output=True, text=True, timeout=60)

    def share(self, directory):
        """The host's `directory` at the same path inside."""
        os.makedirs(self.path(directory), exist_ok=True)
        subprocess.run(["mount", "--bind", directory, self.path(directory)], check=True)

    def cleanup(self):
        subprocess.run(["umount", "-R", "-l", self.root])
        subprocess.run(["umount", "-l", self.top])
        os.rmdir(self.top)


class InstalledEnv(helpers.Env):
    """An Env whose sidecar and restores run the installed binary in the
    chroot, as the user the package created."""
    chroot = None

    def start(self):
        self.replicator = subprocess.Popen(
            self.chroot.command(["/usr/bin/tidemark", "replicate", "-c", self.config, "-v"], user="tidemark"),
            stdout=self.replicator_log, stderr=self.replicator_log)
        time.sleep(0.5)
        check(self.replicator.poll() is None, "installed replicator exited at start: " + self.tail_log())

    def restore(self, target=None, output=None, config=None, extra=()):
        output = output or os.path.join(self.dir, "restored-%d.db" % time.monotonic_ns())
        args = ["/usr/bin/tidemark", "restore", "-c", config or self.config, "app", "-o", output] + list(extra)
        if target is not None:
            args += ["--timestamp", target]
        return subprocess.run(self.chroot.command(args, user="tidemark"), capture_output=True, text=True), output


def user_entry(root, name):
    for line in open(root.path("/etc/passwd")):
        fields = line.rstrip("\n").split(":")
        if fields[0] == name:
            return fields
    raise Failure("no user %s in the chroot's /etc/passwd" % name)


def check_installed_files(root):
    for inside, mode in (("/usr/bin/tidemark", "-0755"), ("/etc/tidemark/tidemark.yml", "-0644"),
                         ("/lib/systemd/system/tidemark.service", "-0644")):
        st = os.lstat(root.path(inside)) if os.path.lexists(root.path(inside)) else None
        got = "%s%04o" % ("-" if stat.S_ISREG(st.st_mode) else "?", st.st_mode & 0o7777) if st else "missing"
        check(got == mode and st.st_uid == 0, "%s: %s, expected %s owned by root" % (inside, got, mode))
    user = user_entry(root, "tidemark")
    uid, gid = int(user[2]), int(user[3])
    check(uid < 1000 and user[5] == "/var/lib/tidemark" and user[6] == "/usr/sbin/nologin",
          "tidemark is not a system user with home /var/lib/tidemark: %s" % user)
    for inside, owner, mode in (("/var/lib/tidemark", (uid, gid), 0o750), ("/etc/tidemark", (0, gid), 0o750)):
        st = os.stat(root.path(inside))
        check(((st.st_uid, st.st_gid), st.st_mode & 0o7777) == (owner, mode), "%s: owner %d:%d mode %04o, expected "
              "%d:%d %04o" % (inside, st.st_uid, st.st_gid, st.st_mode & 0o7777, owner[0], owner[1], mode))
    wants = root.path("/etc/systemd/system/multi-user.target.wants/tidemark.service")
    check(os.path.islink(wants) and os.readlink(wants) == "/lib/systemd/system/tidemark.service",
          "the unit is not enabled (no multi-user.target.wants link)")
    query = root.run("dpkg-query", "-W", "-f", "${Conffiles}", "tidemark")
    check(re.fullmatch(r"\s*/etc/tidemark/tidemark.yml [0-9a-f]{32}\s*", query.stdout),
          "dpkg's conffiles for tidemark: %r" % query.stdout)
    return uid, gid


def replicate_and_restore(root, uid, gid):
    """The installed binary, as user tidemark, replicates ~2 s of commits
    with its spool in /var/lib/tidemark; restores match the ground truth."""
    helpers.TIDEMARK = root.path("/usr/bin/tidemark")      # keygen in Env
    InstalledEnv.chroot = root
    env = InstalledEnv("package")
    try:
        with open(env.config) as f:
            config = f.read()
        with open(env.config, "w") as f:
            f.write("state-dir: /var/lib/tidemark\n" + config)
        env.create_db()
        root.share(env.dir)
        for d, dirs, files in os.walk(env.dir):
            for name in [d] + [os.path.join(d, x) for x in files]:
                os.chown(name, uid, gid)
        env.start()
        subprocess.run([helpers.WRITER_PY, env.db, env.log, "--count", "150"], user=uid, group=gid, extra_groups=[], check=True)
        time.sleep(0.5)
        env.stop()
        spool = root.path("/var/lib/tidemark/app")
        check(os.path.isdir(spool) and os.stat(spool).st_uid == uid, "no spool of user tidemark in /var/lib/tidemark")
        counts = verify_timeline(env, points=4)
        check(counts == sorted(counts) and counts[-1] > counts[0], "restored counts %s" % counts)
    finally:
        env.cleanup()


def check_documented_drop_in(root):
    """docs/deploy.md's drop-in for the unit passes systemd-analyze verify
    beside the installed unit (then it is removed again)."""
    with open(os.path.join(ROOT, "docs/deploy.md")) as f:
        found = re.search(r"^# (/etc/systemd/system/tidemark\.service\.d/\S+).*\n((?:.+\n)+?)```", f.read(), re.M)
    check(found, "no drop-in example in docs/deploy.md")
    drop_in = root.path(found.group(1))
    os.makedirs(os.path.dirname(drop_in))
    with open(drop_in, "w") as f:
        f.write(found.group(2))
    verify = root.run("systemd-analyze", "verify", "/lib/systemd/system/tidemark.service")
    shutil.rmtree(os.path.dirname(drop_in))
    check(verify.returncode == 0 and verify.stdout + verify.stderr == "", "systemd-analyze verify with "
          "docs/deploy.md's drop-in: %d %s%s" % (verify.returncode, verify.stdout, verify.stderr))


def test_deb_installs_in_chroot():
    reason = os.environ.get(NAMESPACE_MARK)
    if reason and reason != "1":
        raise Skip("no chroot: " + reason)
    deb = built_deb()
    root = OverlayRoot()
    try:
        shutil.copy(deb, root.path("/tmp/tidemark.deb"))
        installed = root.run("dpkg", "-i", "/tmp/tidemark.deb")
        check(installed.returncode == 0, "dpkg -i in the chroot failed: " + installed.stdout + installed.stderr)
        uid, gid = check_installed_files(root)
        verify = root.run("systemd-analyze", "verify", "/lib/systemd/system/tidemark.service")
        check(verify.returncode == 0 and verify.stdout + verify.stderr == "",
              "systemd-analyze verify: %d %s%s" % (verify.returncode, verify.stdout, verify.stderr))
        check_documented_drop_in(root)
        version = root.run("/usr/bin/tidemark", "version", user="tidemark")
        check(version.stdout == "tidemark %s\n" % project_version(), "installed version: %r %r"
              % (version.stdout, version.stderr))
        replicate_and_restore(root, uid, gid)
        purged = root.run("dpkg", "--purge", "tidemark")
        check(purged.returncode == 0, "dpkg --purge failed: " + purged.stdout + purged.stderr)
        gone = [p for p in ("/usr/bin/tidemark", "/etc/tidemark", "/lib/systemd/system/tidemark.service",
                            "/etc/systemd/system/multi-user.target.wants/tidemark.service")
                if os.path.lexists(root.path(p))]
        check(not gone, "left after purge: %s" % gone)
        check(os.path.isdir(root.path("/var/lib/tidemark/app")), "purge removed the spool in /var/lib/tidemark")
    finally:
        root.cleanup()


# -- the container image and the Kubernetes example ------------------------------

KUBERNETES_EXAMPLE = os.path.join(ROOT, "config/kubernetes/app-with-tidemark.yaml")


def kubernetes_example():
    """(the ConfigMap, the tidemark.yml it holds parsed, the pod spec)"""
    import yaml
    with open(KUBERNETES_EXAMPLE) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = sorted(d["kind"] for d in docs)
    check(kinds == ["ConfigMap", "Deployment", "PersistentVolumeClaim"], "documents: %s" % kinds)
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return config_map, yaml.safe_load(config_map["data"]["tidemark.yml"]), deployment["spec"]["template"]["spec"]


def mount_holding(container, path, volumes):
    """The volume of `container` whose mount holds `path`."""
    for mount in container["volumeMounts"]:
        if path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/"):
            return mount, volumes[mount["name"]]
    raise Failure("no volume of container %s holds %s" % (container["name"], path))


def test_kubernetes_example_is_a_native_sidecar():
    config_map, config, pod = kubernetes_example()
    sidecars = [c for c in pod.get("initContainers", []) if c.get("restartPolicy") == "Always"]
    check([c["name"] for c in sidecars] == ["tidemark"], "native sidecars (initContainers with restartPolicy: "
          "Always): %s" % [c["name"] for c in sidecars])
    side, app = sidecars[0], pod["containers"][0]
    volumes = {v["name"]: v for v in pod["volumes"]}
    # the database's volume, at the same place in both containers
    db = config["dbs"][0]["path"]
    side_mount, volume = mount_holding(side, db, volumes)
    app_mount, app_volume = mount_holding(app, db, volumes)
    check(volume is app_volume and side_mount["mountPath"] == app_mount["mountPath"] and "persistentVolumeClaim"
          in volume, "the sidecar's %s and the application's %s are not the same volume" % (side_mount, app_mount))
    # the configuration from the ConfigMap, at the path the sidecar reads
    check(side["args"][:2] == ["replicate", "-c"], "sidecar args: %s" % side["args"])
    mount, volume = mount_holding(side, side["args"][2], volumes)
    check(volume.get("configMap", {}).get("name") == config_map["metadata"]["name"]
          and mount.get("subPath") in config_map["data"], "the configuration is not the ConfigMap's: %s" % mount)
    # the key from a Secret; the S3 credentials from a Secret
    mount, volume = mount_holding(side, config["encryption"]["recipient-file"], volumes)
    check("secret" in volume, "the key's volume is not a Secret: %s" % volume)
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in side["env"]}
    replica = config["dbs"][0]["replicas"][0]
    check(replica["access-key-id"] == "${AWS_ACCESS_KEY_ID}" and "AWS_ACCESS_KEY_ID" in env
          and replica["secret-access-key"] == "${AWS_SECRET_ACCESS_KEY}" and "AWS_SECRET_ACCESS_KEY" in env,
          "S3 credentials not from a Secret: %s" % env)
    # probes on the configured metrics port, reachable from the kubelet
    host, port = config["metrics"]["listen"].rsplit(":", 1)
    ports = {p["name"]: p["containerPort"] for p in side["ports"]}
    check(host == "0.0.0.0" and ports == {"metrics": int(port)}, "metrics listen %s, ports %s"
          % (config["metrics"]["listen"], ports))
    check(side["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"},
          "readinessProbe: %s" % side["readinessProbe"])
    check(side["livenessProbe"]["tcpSocket"] == {"port": "metrics"}, "livenessProbe: %s" % side["livenessProbe"])
    check("startupProbe" not in side, "a startup probe would hold the application back until the database exists")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dockerfile_final_stage():
    """The shell commands of the RUN lines of the Dockerfile's last stage."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = f.read().replace("\\\n", " ")
    last_stage = re.split(r"^FROM ", text, flags=re.M)[-1]
    return [c.strip() for line in last_stage.splitlines() if line.startswith("RUN ")
            for c in line[len("RUN "):].split("&&")]


def make_image_root(root, deb):
    """The image's final stage, emulated in `root`: the package copied in
    and installed (dpkg -i for apt-get install: no network here), then
    the stage's other commands as written."""
    shutil.copy(deb, root.path("/tmp/"))
    for command in dockerfile_final_stage():
        if command.startswith("apt-get update"):
            continue
        if "apt-get install" in command:
            check("/tmp/tidemark_*.deb" in command, "the image does not install the package: " + command)
            command = "dpkg -i /tmp/tidemark_*.deb"
        done = root.run("sh", "-c", command)
        check(done.returncode == 0, "Dockerfile command %r failed: %s%s" % (command, done.stdout, done.stderr))


def mount_in_pod(root, source, inside, read_only=False):
    if os.path.isdir(source):
        os.makedirs(root.path(inside), exist_ok=True)
    subprocess.run(["mount", "--bind", source, root.path(inside)], check=True)
    if read_only:
        subprocess.run(["mount", "-o", "remount,bind,ro", root.path(inside)], check=True)


class PodEnv(helpers.Env):
    """The sidecar of the Kubernetes example: the image's root (read-only),
    the volumes at the pod's paths, run as the pod's runAsUser."""
    chroot = None
    user = None

    def start(self):
        self.replicator = subprocess.Popen(
            self.chroot.command(["/usr/bin/tidemark", "replicate", "-c", "/etc/tidemark/tidemark.yml", "-v"],
                                user=self.user),
            stdout=self.replicator_log, stderr=self.replicator_log)
        time.sleep(0.5)
        check(self.replicator.poll() is None, "the pod's sidecar exited at start: " + self.tail_log())


def test_kubernetes_example_configuration_runs():
    """The Kubernetes example, as close as this machine allows: the image
    (the Dockerfile's last stage in a chroot, its root then read-only),
    the ConfigMap's configuration unchanged but for the S3 replica (a file
    replica) and the listen address, mounted with the key (public half,
    root-owned 0444 as a Secret volume gives it) and the database volume
    at the pod's paths, the sidecar run as the pod's runAsUser: it follows
    the database an application writes, /healthz answers 200, restores
    with the secret key match the ground truth."""
    import json, urllib.request, yaml
    reason = os.environ.get(NAMESPACE_MARK)
    if reason and reason != "1":
        raise Skip("no chroot: " + reason)
    _, config, pod = kubernetes_example()
    uid, gid = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    db_inside = config["dbs"][0]["path"]
    deb = built_deb()
    helpers.TIDEMARK = os.path.join(ROOT, "tidemark")
    root = OverlayRoot()
    env = PodEnv("kubernetes")
    try:
        make_image_root(root, deb)
        data, key_dir = os.path.join(env.dir, "data"), os.path.join(env.dir, "secret")
        os.mkdir(data, 0o2775)
        os.mkdir(key_dir, 0o755)
        os.mkdir(env.backup, 0o700)
        secret = os.path.join(env.dir, "backup-key")
        subprocess.run([helpers.TIDEMARK, "keygen", "--pair", "-o", secret], check=True, capture_output=True)
        public_inside = config["encryption"]["recipient-file"]
        shutil.copy(secret + ".pub", os.path.join(key_dir, os.path.basename(public_inside)))
        os.chmod(os.path.join(key_dir, os.path.basename(public_inside)), 0o444)
        port = free_port()
        config["metrics"]["listen"] = "127.0.0.1:%d" % port
        config["dbs"][0]["replicas"] = [{"type": "file", "path": "/backup"}]
        pod_config = os.path.join(env.dir, "configmap-tidemark.yml")
        with open(pod_config, "w") as f:
            yaml.safe_dump(config, f)
        # the host's view, for the writer and the restores
        env.db = os.path.join(data, os.path.basename(db_inside))
        env.log = os.path.join(data, "commits.log")
        env.config = env.write_config("restore.yml", secret)
        env.create_db()
        for path in (env.dir, data, env.backup, env.db):
            os.chown(path, uid, gid)
        for inside in (os.path.dirname(db_inside), "/backup", os.path.dirname(public_inside)):
            os.makedirs(root.path(inside), exist_ok=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", root.root], check=True)   # readOnlyRootFilesystem
        mount_in_pod(root, data, os.path.dirname(db_inside))
        mount_in_pod(root, env.backup, "/backup")
        mount_in_pod(root, pod_config, "/etc/tidemark/tidemark.yml", read_only=True)
        mount_in_pod(root, key_dir, os.path.dirname(public_inside), read_only=True)
        PodEnv.chroot, PodEnv.user = root, "%d:%d" % (uid, gid)
        env.start()
        subprocess.run([helpers.WRITER_PY, env.db, env.log, "--count", "120"], user=uid, group=gid,
                       extra_groups=[], check=True)
        with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=5) as answer:
            health = (answer.status, json.loads(answer.read()))
        check(health[0] == 200 and health[1]["status"] == "ok", "/healthz: %s" % (health,))
        time.sleep(0.5)
        env.stop()
        check(os.path.isdir(os.path.join(data, ".%s-tidemark" % os.path.basename(db_inside))),
              "no state directory beside the database on the volume")
        counts = verify_timeline(env, points=3, extra=("--key-file", secret))
        check(counts[-1] > counts[0], "restored counts %s" % counts)
    finally:
        env.cleanup()
        root.cleanup()


def usable_container_tool():
    """(tool, None) or (None, why no image can be built here)."""
    found = [t for t in CONTAINER_TOOLS if shutil.which(t)]
    if not found:
        return None, "no container tool (%s) on this machine" % ", ".join(CONTAINER_TOOLS)
    for tool in found:
        if tool == "buildah" or subprocess.run([tool, "info"], capture_output=True, timeout=30).returncode == 0:
            return tool, None
    return None, "%s installed but not usable (`%s info` fails: no daemon running)" % (found[0], found[0])


def test_dockerfile_installs_the_package():
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    bases = [l.split()[1] for l in lines if l.startswith("FROM ")]
    check(bases and all(b.startswith("debian:12") for b in bases), "base images: %s" % bases)
    text = "\n".join(lines)
    check("RUN make deb" in text and "apt-get install" in text and "/tmp/tidemark_*.deb" in text
          and 'ENTRYPOINT ["/usr/bin/tidemark"]' in text, "the Dockerfile does not install the package it builds")


def test_container_image():
    tool, why = usable_container_tool()
    if not tool:
        raise Skip(why)
    tag = "tidemark-test:%s" % project_version()
    build = [tool, "bud"] if tool == "buildah" else [tool, "build"]
    proc = subprocess.run(build + ["-t", tag, ROOT], capture_output=True, text=True, timeout=900)
    check(proc.returncode == 0, "image build failed: " + (proc.stdout + proc.stderr)[-3000:])
    if tool == "buildah":
        return
    out = subprocess.run([tool, "run", "--rm", tag, "version"], capture_output=True, text=True, timeout=60)
    check(out.stdout == "tidemark %s\n" % project_version(), "tidemark version in the image: %r %r"
          % (out.stdout, out.stderr))


if __name__ == "__main__":
    enter_private_mount_namespace()
    sys.exit(run_tests([test_make_install_destdir, test_make_install_prefix_paths, test_deb_contents_and_control,
                        test_deb_depends_on_the_libraries_it_links, test_deb_installs_in_chroot,
                        test_kubernetes_example_is_a_native_sidecar, test_kubernetes_example_configuration_runs,
                        test_dockerfile_installs_the_package, test_container_image]))
