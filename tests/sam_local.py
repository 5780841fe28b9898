#!/usr/bin/env python3
"""`sam local`, as a user types it, offline: the real SAM CLI (PyPI, pinned)
on a Docker Engine started here, with a local stand-in for the
`provided.al2023` arm64 base image and the project's real arm64 artefact.

1. `sam build` on template.yaml (BuildMethod: makefile): each function's
   bootstrap must be byte for byte the artefact the suite tests
   (UFORGE_ARTEFACT_DIR).
2. `sam local invoke <function> --env-vars events/local-env.json` for
   each function of lambda-functions.txt that has sample events, with
   every sample of its folder, each answer as its expected.json says
   (CancelFunction: events/, AutomationFunction: events/automation/).
3. `sam local start-api`, then real HTTP requests through SAM's emulation
   of the template's routes: a Basic cancel, an API-key cancel (signed here,
   independently of the Rust code), a wrong method (405 with Allow), an
   unknown path, a wrong password; and the environment SAM gave the
   function, read from /proc, against tests/fixtures/lambda-env/
   sam-local-*.env (the set tests/suite/lambda_runtime.rs starts the
   binaries with).

Setup, where missing (scripts/test runs this after the artefact is built):
Docker Engine (Debian's docker.io; dockerd started here without its
userland proxy, and a DOCKER-USER rule that drops everything a container
sends out of the bridge: containers reach nothing, and are reached only on
the ports SAM publishes on 127.0.0.1), arm64 emulation (qemu-user-static through
binfmt_misc), the SAM CLI in its own virtualenv (its pins do not meet
the suite's moto and cfn-lint), and the stand-in image, built offline
from Debian's busybox-static:arm64 and the arm64 glibc of the cross
toolchain, cached by the content of its inputs.

Every container started here and the daemon, if started here, are stopped
at the end, pass or fail. SAM_CLI_TELEMETRY=0: nothing leaves the machine.
Exits non-zero on the first mismatch, printing what was seen."""

import base64
import hashlib
import hmac
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# One reading of the answers, and of the environment given, for both tools.
from local_invoke import (  # noqa: E402
    FIXTURES, check_answer, check_fixture, in_session, listener_pid, manifest, running_environments,
    what_the_tool_set)

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
SAM_VERSION = "1.170.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "uforge-publish-cancel"
IMAGE_REPO = "uforge-test/provided-al2023"
# The glibc and loader the artefact needs, from the cross toolchain's
# arm64 sysroot (scripts/build-arm64 installs it).
ARM64_LIBS = Path("/usr/aarch64-linux-gnu/lib")
LIBS = ["ld-linux-aarch64.so.1", "libc.so.6", "libm.so.6", "libgcc_s.so.1",
        "libpthread.so.0", "libdl.so.2", "librt.so.1"]
# Each function's binary, from the one manifest of the Lambda binaries.
FUNCTIONS = {logical: binary for logical, binary, _ in manifest()}
SAM_ENV = dict(os.environ, SAM_CLI_TELEMETRY="0", AWS_REGION="us-east-1",
               AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="local",
               AWS_SECRET_ACCESS_KEY="local")


STARTED = time.time()


def step(text):
    print(f"sam local [{time.time() - STARTED:5.0f} s]: {text}", flush=True)


def run(cmd, check=True, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- what the machine needs -------------------------------------------------

def apt_install(*packages):
    step(f"installing {' '.join(packages)} (Debian)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", *packages], env=env)


class Docker:
    """A Docker Engine: the one running, or one started here (and stopped)."""

    def __init__(self):
        self.daemon = None

    def __enter__(self):
        if run(["docker", "info"], check=False).returncode == 0:
            return self
        if not shutil.which("dockerd"):
            apt_install("docker.io")
        # Without the userland proxy a published port refuses connections
        # until the emulator in the container listens, so SAM waits for it
        # (SAM_CLI_CONTAINER_CONNECTION_TIMEOUT) instead of sending its
        # request into a proxy that accepted early, retrying three times in
        # 0.7 s and giving up (seen under load with arm64 under qemu).
        step("starting dockerd (no userland proxy; containers may not send out of the bridge)")
        self.log = open(tempfile.mktemp(prefix="dockerd-", suffix=".log"), "w")
        self.daemon = subprocess.Popen(
            ["dockerd", "--userland-proxy=false"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while run(["docker", "info"], check=False).returncode != 0:
            if self.daemon.poll() is not None or time.time() > deadline:
                sys.exit(f"dockerd did not come up; its log: {self.log.name}")
            time.sleep(0.5)
        run(["iptables", "-I", "DOCKER-USER", *self.NO_EGRESS])
        return self

    # Forwarded traffic from the default bridge to any other interface.
    NO_EGRESS = ["-i", "docker0", "!", "-o", "docker0", "-j", "DROP"]

    def __exit__(self, *exc):
        # Every container of the stand-in image (SAM's too: a container
        # carries its image's labels), whatever its state.
        ids = run(["docker", "ps", "-aq", "--filter", "label=uforge-sam-test"], check=False).stdout.split()
        if ids:
            run(["docker", "rm", "-f", *ids], check=False)
        if self.daemon:
            step("stopping dockerd")
            run(["iptables", "-D", "DOCKER-USER", *self.NO_EGRESS], check=False)
            os.killpg(self.daemon.pid, signal.SIGTERM)
            try:
                self.daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.daemon.pid, signal.SIGKILL)
        return False


def arm64_emulation():
    """binfmt_misc with qemu-aarch64, fix-binary (works inside containers)."""
    misc = Path("/proc/sys/fs/binfmt_misc")
    if not (misc / "register").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(misc)])
    entry = misc / "qemu-aarch64"
    if not entry.exists():
        if not shutil.which("update-binfmts") or not Path("/usr/libexec/qemu-binfmt/aarch64-binfmt-P").exists():
            apt_install("qemu-user-static", "binfmt-support")
        run(["update-binfmts", "--enable", "qemu-aarch64"], check=False)
    if not entry.exists() or "F" not in entry.read_text().split("flags:")[1].split()[0]:
        sys.exit(f"no fix-binary qemu-aarch64 in binfmt_misc: {entry.read_text() if entry.exists() else 'absent'}")


def sam_cli():
    venv = CACHE / f"sam-{SAM_VERSION}"
    sam = venv / "bin" / "sam"
    if not sam.exists():
        step(f"installing aws-sam-cli=={SAM_VERSION} in {venv}")
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(venv / "bin" / "pip"), "install", "--quiet", f"aws-sam-cli=={SAM_VERSION}"])
    return str(sam)


def stand_in_image():
    """The stand-in for provided.al2023 on arm64: busybox (the shell SAM's
    image build runs) and the loader and glibc the artefact links, as one
    layer of an image whose configuration says linux/arm64, loaded with
    `docker load` (no registry, no builder). Tagged by a digest of its
    inputs, so an unchanged image is built once per machine."""
    deb_dir = CACHE / "debs"
    deb_dir.mkdir(parents=True, exist_ok=True)
    debs = sorted(deb_dir.glob("busybox-static_*_arm64.deb"))
    if not debs:
        step("downloading busybox-static:arm64 (Debian)")
        if "arm64" not in run(["dpkg", "--print-foreign-architectures"]).stdout.split():
            run(["dpkg", "--add-architecture", "arm64"])
            run(["apt-get", "update", "-qq"])
        run(["apt-get", "download", "busybox-static:arm64"], cwd=deb_dir)
        debs = sorted(deb_dir.glob("busybox-static_*_arm64.deb"))
    digest = hashlib.sha256(b"stand-in v1\n")
    digest.update(debs[-1].read_bytes())
    for lib in LIBS:
        digest.update(lib.encode() + (ARM64_LIBS / lib).read_bytes())
    tag = f"{IMAGE_REPO}:arm64-{digest.hexdigest()[:16]}"
    if run(["docker", "image", "inspect", tag], check=False).returncode == 0:
        return tag
    step(f"building the stand-in image {tag}")
    with tempfile.TemporaryDirectory() as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(["dpkg-deb", "-x", str(debs[-1]), str(rootfs)])
        for applet in ["sh", "ls", "cat", "mv", "cp", "chmod", "mkdir", "rm", "env"]:
            (rootfs / "bin" / applet).symlink_to("busybox")
        for d in ["lib", "tmp", "var/task", "var/runtime", "var/rapid", "etc", "opt"]:
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        for lib in LIBS:
            shutil.copyfile(ARM64_LIBS / lib, rootfs / "lib" / lib)
            (rootfs / "lib" / lib).chmod(0o755)
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        image = Path(tmp) / "image.tar"
        image.write_bytes(image_archive(rootfs, tag))
        run(["docker", "load", "-i", str(image)])
    return tag


def image_archive(rootfs, tag):
    """A `docker save` archive of one layer holding `rootfs`."""
    layer_buf = io.BytesIO()
    with tarfile.open(fileobj=layer_buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for path in sorted(rootfs.rglob("*")):
            info = t.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if info.isfile():
                with open(path, "rb") as f:
                    t.addfile(info, f)
            else:
                t.addfile(info)
    layer = layer_buf.getvalue()
    config = json.dumps({
        "architecture": "arm64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"],
                   "WorkingDir": "/var/task",
                   "Labels": {"uforge-sam-test": "stand-in for provided.al2023"}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, data in [(config_name, config), ("layer/layer.tar", layer), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()


# --- the three things users type ---------------------------------------------

def sam_build(sam, build_dir):
    step("sam build")
    run([sam, "build", "--template-file", str(ROOT / "template.yaml"), "--build-dir", str(build_dir)],
        cwd=ROOT, env=SAM_ENV)
    artefacts = Path(os.environ["UFORGE_ARTEFACT_DIR"])
    for function, binary in FUNCTIONS.items():
        built = build_dir / function / "bootstrap"
        if built.read_bytes() != (artefacts / binary).read_bytes():
            sys.exit(f"sam build's {built} is not the tested artefact {artefacts / binary}")
        print(f"  {function}/bootstrap = the tested {binary}")
    return build_dir / "template.yaml"


def sam_invoke(sam, template, image, function, event):
    done = run([sam, "local", "invoke", function, "--template-file", str(template),
                "--event", str(EVENTS / event), "--env-vars", str(EVENTS / "local-env.json"),
                "--invoke-image", image, "--skip-pull-image"],
               check=False, cwd=ROOT, env=SAM_ENV, timeout=300)
    # stdout is the function's answer (or its error), the last line.
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        sys.exit(f"events/{event}: sam local invoke failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return json.loads(lines[-1])


def every_sample(sam, template, image, function, folder, check):
    expected = json.loads((EVENTS / folder / "expected.json").read_text())
    for name, want in sorted(expected.items()):
        if name.startswith("_"):
            continue
        sample = str(Path(folder) / name)
        print(f"  events/{sample}: {check(sample, want, sam_invoke(sam, template, image, function, sample))}")


def sam_answer(sample, want, resp):
    # SAM prints a function error as the answer: {"errorType": ...}.
    if "errorType" in want:
        if resp.get("errorType") != want["errorType"]:
            sys.exit(f"events/{sample}: expected {want['errorType']}, got {resp}")
        return want["errorType"]
    return check_answer(sample, want, resp)


def start_api(sam, template, image):
    # The port is picked here and released before SAM binds it: whoever
    # listens is checked (a process of SAM's own session), and a start
    # that lost the port is tried again on another.
    for _ in range(5):
        port = free_port()
        step(f"sam local start-api on 127.0.0.1:{port}")
        log = tempfile.NamedTemporaryFile(prefix="sam-start-api-", suffix=".log", delete=False)
        proc = subprocess.Popen(
            [sam, "local", "start-api", "--template-file", str(template), "--host", "127.0.0.1",
             "--port", str(port), "--env-vars", str(EVENTS / "local-env.json"),
             "--warm-containers", "EAGER", "--invoke-image", image, "--skip-pull-image"],
            cwd=ROOT, env=SAM_ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 300
        ours = None
        while ours is None and proc.poll() is None and time.time() < deadline:
            holder = listener_pid(port)
            if holder is not None:
                ours = in_session(holder, proc.pid)
            else:
                time.sleep(0.5)
        try:
            if ours:
                api_requests(f"http://127.0.0.1:{port}")
                # The warm container's function, as the host sees its process.
                envs = running_environments("bootstrap", {"AWS_SAM_LOCAL": "true",
                                                          "AWS_LAMBDA_FUNCTION_NAME": "CancelFunction"})
                if not envs:
                    sys.exit("no running CancelFunction found under sam local start-api")
                check_fixture("sam local", what_the_tool_set(envs[0], {}),
                              FIXTURES / f"sam-local-{SAM_VERSION}.env")
                return
            if ours is None and (proc.poll() is None or time.time() >= deadline):
                sys.exit(f"sam local start-api did not listen:\n{Path(log.name).read_text()}")
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    sys.exit("sam local start-api could not get a port in 5 tries")


def request(url, method, headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def header(headers, name):
    """A header's value, whatever case the server wrote its name in."""
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def basic(login, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


def api_requests(base):
    path = "/api/users/alice/appliances/1/images/2/pimages/{}/cancel"
    checks = []

    status, headers, body = request(base + path.format(3), "DELETE", basic("alice", "alice-password"))
    checks.append(("Basic cancel", status == 200 and "<cancelled>true</cancelled>" in body
                   and header(headers, "Content-Type") == "application/xml", status, (headers, body)))

    # UForge's signed URL: HMAC-SHA1 over the URI relative to the base,
    # without its leading slash, up to and including apiKey (the seed's
    # PUBKEY123 / SECRETKEY456).
    relative = path.format(4)[len("/api/"):] + "?apiKey=PUBKEY123"
    signature = base64.b64encode(hmac.new(b"SECRETKEY456", relative.encode(), hashlib.sha1).digest()).decode()
    url = base + path.format(4) + "?apiKey=PUBKEY123&signature=" + urllib.request.quote(signature, safe="")
    status, _, body = request(url, "DELETE", {"Accept": "application/json"})
    checks.append(("API-key cancel", status == 200 and json.loads(body).get("cancelled") is True, status, body))

    status, headers, body = request(base + path.format(3), "GET", basic("alice", "alice-password"))
    checks.append(("wrong method", status == 405 and header(headers, "Allow") == "DELETE"
                   and "<statusCode>405</statusCode>" in body, status, (headers, body)))

    status, _, body = request(base + "/api/users/alice/nothing-here", "DELETE", basic("alice", "alice-password"))
    checks.append(("unknown path", status == 404 and "<statusCode>404</statusCode>" in body, status, body))

    status, headers, body = request(base + path.format(3), "DELETE", basic("alice", "wrong"))
    checks.append(("wrong password", status == 401
                   and header(headers, "WWW-Authenticate") == 'Basic realm="UForge"'
                   and "<statusCode>401</statusCode>" in body, status, (headers, body)))

    for name, ok, status, body in checks:
        if not ok:
            sys.exit(f"start-api {name}: {status}\n{body}")
        print(f"  {name}: {status}")


def main():
    if "UFORGE_ARTEFACT_DIR" not in os.environ:
        sys.exit("UFORGE_ARTEFACT_DIR: run from scripts/test, after the arm64 artefact is built")
    sam = sam_cli()
    arm64_emulation()
    with Docker():
        image = stand_in_image()
        with tempfile.TemporaryDirectory(prefix="sam-build-") as build:
            template = sam_build(sam, Path(build))
            for logical, _, folder in manifest():
                if folder is not None:
                    step(f"sam local invoke {logical}, every sample of events/{folder}")
                    every_sample(sam, template, image, logical, folder, sam_answer)
            start_api(sam, template, image)
    print("sam local: build, invoke with every sample, start-api: as expected")


if __name__ == "__main__":
    main()
