#!/usr/bin/env python3
"""The README's local-invocation commands, with the real tool: `cargo lambda
watch` (its Runtime API emulator, no Docker) and `cargo lambda invoke` with
every sample event, each answer compared with events/expected.json (the
automation function's with events/automation/expected.json); then a
misconfigured start must come back as its init error, promptly.

The environment cargo lambda gave the running function is read from /proc
and compared with tests/fixtures/lambda-env/cargo-lambda-*.env, the exact
variable set tests/suite/lambda_runtime.rs starts the binaries with: if
the tool changes what it sets, this says so (and the memory backend's
guard, config::Host, must be looked at again).

Run by scripts/test after `cargo test` (the binaries are built by then).
Exits non-zero on the first mismatch, printing what was seen."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
FIXTURES = ROOT / "tests" / "fixtures" / "lambda-env"
CARGO_LAMBDA_FIXTURE = FIXTURES / "cargo-lambda-1.9.2.env"
# What a Lambda host sets, by name: the service's and the emulators' own.
LAMBDA_NAME = re.compile(r"^(AWS_|LAMBDA_|_|TZ$|UFORGE_)")
# Whose values config::Host decides on: they must match the fixture's.
DECISIVE = {"AWS_LAMBDA_INITIALIZATION_TYPE", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "_HANDLER",
            "AWS_EXECUTION_ENV", "AWS_SAM_LOCAL", "AWS_LAMBDA_LOG_STREAM_NAME", "UFORGE_BACKEND"}


def read_env_file(path):
    """A fixture: KEY=VALUE lines, `#` comments."""
    pairs = {}
    for line in Path(path).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def running_environments(cmdline_part, required):
    """The environments of the processes whose command line holds
    `cmdline_part` and whose environment has every `required` entry."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if cmdline_part.encode() not in cmd:
            continue
        env = dict(e.decode(errors="replace").partition("=")[::2] for e in raw.split(b"\0") if e)
        if all(env.get(k) == v for k, v in required.items()):
            found.append(env)
    return found


def what_the_tool_set(env, inherited):
    """The Lambda variables of `env` that were not simply inherited from
    `inherited` (our own environment, which cargo lambda passes on)."""
    return {k: v for k, v in env.items() if LAMBDA_NAME.match(k) and inherited.get(k) != v}


def check_fixture(tool, env, fixture):
    """`env` (what `tool` set) against the fixture: the same names, and the
    same values where config::Host looks."""
    want = {k: v for k, v in read_env_file(fixture).items() if LAMBDA_NAME.match(k)}
    if set(env) != set(want) or any(env.get(k) != want.get(k) for k in DECISIVE):
        got = "\n".join(f"  {k}={v}" for k, v in sorted(env.items()))
        sys.exit(f"{tool} now sets another environment than {fixture.relative_to(ROOT)} says "
                 f"(update the fixture, then check config::Host still tells it from the Lambda service):\n{got}")
    print(f"{tool}: the function's environment is {fixture.relative_to(ROOT)}'s")
# A cold `cargo lambda watch` may first build the binary.
START_TIMEOUT = 600
INVOKE_TIMEOUT = 120


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def watch(port, *extra):
    return subprocess.Popen(
        ["cargo", "lambda", "watch", "--invoke-address", "127.0.0.1", "--invoke-port", str(port), *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def listener_pid(port):
    """The process holding the listening socket on `port` (from /proc), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[1].rsplit(":", 1)[1] == f"{port:04X}" and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in {f"socket:[{i}]" for i in inodes}:
                    return int(pid)
        except OSError:
            continue
    return None


def in_session(pid, session):
    try:
        return os.getsid(pid) == session
    except OSError:
        return False


def start_watch(*extra):
    """`cargo lambda watch` on a free port: the port is picked here and
    released before the tool binds it, so another process could take it in
    between. Whoever listens is checked (a process of the tool's own
    session), and a start that lost the port is tried again on another."""
    for _ in range(5):
        port = free_port()
        proc = watch(port, *extra)
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline and proc.poll() is None:
            holder = listener_pid(port)
            if holder is not None:
                if in_session(holder, proc.pid):
                    return port, proc
                break  # someone else took the port
            time.sleep(0.2)
        if proc.poll() is None and time.time() >= deadline:
            stop(proc)
            sys.exit(f"cargo lambda watch did not listen within {START_TIMEOUT} s")
        stop(proc)
    sys.exit("cargo lambda watch could not get a port in 5 tries")


def invoke(port, function, event, timeout=INVOKE_TIMEOUT):
    return subprocess.run(
        [
            "cargo", "lambda", "invoke", function,
            "--invoke-address", "127.0.0.1", "--invoke-port", str(port),
            "--data-file", str(EVENTS / event),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def content_type(resp):
    headers = resp.get("headers") or {}
    multi = resp.get("multiValueHeaders") or {}
    return headers.get("content-type") or (multi.get("content-type") or [None])[0]


def manifest():
    """lambda-functions.txt: (logical id, binary, sample folder or None)
    per function (shared with tests/sam_local.py)."""
    out = []
    for line in (ROOT / "lambda-functions.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            logical, binary, events = line.split()
            out.append((logical, binary, None if events == "-" else events))
    return out


def check_answer(sample, want, resp):
    """A function's answer against its line of expected.json: an HTTP
    answer (`status`) or an automation one (shared with tests/sam_local.py)."""
    return (check_http if "status" in want else check_automation)(sample, want, resp)


def each_sample(function, folder, check):
    """Invokes `function` under one `cargo lambda watch` with every sample
    that `folder`/expected.json lists, in name order; `check(name, want,
    done)` returns what to print, or exits on a mismatch."""
    expected = json.loads((EVENTS / folder / "expected.json").read_text())
    port, proc = start_watch()
    try:
        # The first invocation builds and starts the binary.
        for name, want in sorted(expected.items()):
            if name.startswith("_"):
                continue
            sample = str(Path(folder) / name)
            done = invoke(port, function, sample, timeout=START_TIMEOUT)
            print(f"events/{sample}: {check(sample, want, done)}")
        if function == "publish-cancel":
            envs = running_environments(f"/{function}", {"AWS_LAMBDA_FUNCTION_NAME": function})
            if len(envs) != 1:
                sys.exit(f"expected one running {function} under cargo lambda, found {len(envs)}")
            check_fixture("cargo lambda", what_the_tool_set(envs[0], os.environ), CARGO_LAMBDA_FIXTURE)
    finally:
        stop(proc)


def answer(sample, done):
    if done.returncode != 0:
        sys.exit(f"events/{sample}: cargo lambda invoke failed:\n{done.stdout}\n{done.stderr}")
    return json.loads(done.stdout)


def check_http(sample, want, resp):
    """An HTTP function's answer against its line of events/expected.json
    (shared with tests/sam_local.py)."""
    got = (resp.get("statusCode"), content_type(resp))
    wanted = (want["status"], want.get("contentType"))
    if got != wanted:
        sys.exit(f"events/{sample}: got {got}, expected {wanted}: {resp}")
    return got[0]


def check_automation(sample, want, resp):
    """An automation answer (a batch's failures, or an outcome) against
    events/automation/expected.json (shared with tests/sam_local.py)."""
    if "batchItemFailures" in want:
        got = [f["itemIdentifier"] for f in resp.get("batchItemFailures", [])]
        if got != want["batchItemFailures"]:
            sys.exit(f"events/{sample}: failed items {got}, expected {want['batchItemFailures']}")
        return f"{len(got)} failed item(s)"
    if (resp.get("outcome"), resp.get("state")) != (want["outcome"], want["state"]):
        sys.exit(f"events/{sample}: got {resp}, expected {want}")
    return resp["outcome"]


def invoke_answer(sample, want, done):
    if "errorType" in want:
        # A refused command is the invocation's error, by type.
        text = done.stdout + done.stderr
        if done.returncode == 0 or want["errorType"] not in text:
            sys.exit(f"events/{sample}: expected {want['errorType']}, got:\n{text}")
        return want["errorType"]
    return check_answer(sample, want, answer(sample, done))


def a_misconfigured_start_is_an_init_error():
    # A seed file that does not exist. (Cargo.toml's UFORGE_BACKEND=memory
    # wins over --env-var, so the AWS backend cannot be chosen from here;
    # tests/suite/lambda_runtime.rs covers the missing tables through the
    # suite's own Runtime API.)
    port, proc = start_watch("--env-var", "UFORGE_SEED=/nonexistent/seed.json")
    try:
        started = time.time()
        try:
            # Bounded: before the fix, cargo lambda waited for its own
            # 5-minute timeout.
            done = invoke(port, "publish-cancel", "apigw-rest-cancel-basic.json", timeout=60)
        except subprocess.TimeoutExpired:
            sys.exit("a misconfigured function hung cargo lambda invoke for 60 s")
        text = done.stdout + done.stderr
        if "Runtime.ConfigError" not in text or "/nonexistent/seed.json" not in text:
            sys.exit(f"expected the init error naming the seed file, got rc={done.returncode}:\n{text}")
        print(f"misconfigured start: init error reported in {time.time() - started:.1f} s")
    finally:
        stop(proc)


if __name__ == "__main__":
    for _, binary, folder in manifest():
        if folder is not None:
            each_sample(binary, folder, invoke_answer)
    a_misconfigured_start_is_an_init_error()
    print("cargo lambda: every sample event as expected; the init error reported")
