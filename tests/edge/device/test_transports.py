"""Transports: parsing, local runs with a bounded timeout, and ssh against a real OpenSSH server.

The ssh tests start ``sshd`` as a child process on a free port of 127.0.0.1 with its own config
and a throwaway key pair in the test's tmp folder (CI installs openssh-server in .ci/run).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from edge.device.transports import LocalTransport, SshTransport, TransportError, get_transport, parse_transport

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None)

# A stand-in runner: prints the runner JSON shape and echoes its arguments; crashes on request.
ECHO_RUNNER = """\
import json, os, sys
if "--crash" in sys.argv:
    print("runner exploded: bad model", file=sys.stderr); sys.exit(3)
model = sys.argv[sys.argv.index("--model") + 1]
print(json.dumps({"argv": sys.argv[1:], "model_bytes": os.path.getsize(model), "cwd": os.getcwd(),
                  "methods": {}, "peak_rss_bytes": 1}))
"""


def test_parse_transport():
    assert parse_transport("local") == {"kind": "local"}
    assert parse_transport("ssh://pi@raspberrypi.local") == {"kind": "ssh", "user": "pi", "host": "raspberrypi.local", "port": 22}
    assert parse_transport("ssh://10.0.0.2:2222")["port"] == 2222
    assert parse_transport("adb:emulator-5554") == {"kind": "adb", "serial": "emulator-5554"}
    assert get_transport("none") is None
    for bad in ("ssh://", "ssh://a b", "ftp://x", "adb:", "ssh://h:99999", "ssh://h;rm -rf /"):
        with pytest.raises(TransportError):
            parse_transport(bad)


def test_local_run_collects_output_and_is_bounded(tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(ECHO_RUNNER)
    model = tmp_path / "m.bin"
    model.write_bytes(b"x" * 10)
    r = LocalTransport().run([sys.executable, script, "--model", model])
    assert r.returncode == 0 and json.loads(r.stdout)["model_bytes"] == 10 and r.peak_rss_bytes > 0
    crash = LocalTransport().run([sys.executable, script, "--model", model, "--crash"])
    assert crash.returncode == 3 and "runner exploded" in crash.stderr
    start = time.monotonic()
    slow = LocalTransport().run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=1)
    assert slow.returncode == 124 and "timed out" in slow.stderr and time.monotonic() - start < 10
    with pytest.raises(TransportError, match="does not exist"):
        LocalTransport().run([sys.executable, tmp_path / "missing.py"])


def test_unreachable_ssh_host_fails_fast_with_one_line():
    with socket.socket() as s:  # a port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = SshTransport(f"ssh://nobody@127.0.0.1:{port}")
    start = time.monotonic()
    with pytest.raises(TransportError, match="unreachable") as e:
        t.run(["true"])
    assert time.monotonic() - start < 30 and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    """A real sshd on 127.0.0.1:<free port>, accepting one throwaway key; yields a transport."""
    if SSHD is None or shutil.which("ssh") is None or shutil.which("scp") is None:
        pytest.skip("OpenSSH server/client not installed (.ci/run installs openssh-server)")
    tmp = tmp_path_factory.mktemp("sshd")
    for key in ("host_key", "user_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / key)], check=True)
    (tmp / "authorized_keys").write_text((tmp / "user_key.pub").read_text())
    os.chmod(tmp / "authorized_keys", 0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp / 'host_key'}\nPidFile {tmp / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}\nStrictModes no\nUsePAM no\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\n")
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation folder (the service unit makes it)
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(tmp / "sshd_config")], stderr=open(tmp / "sshd.log", "w"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    if proc.poll() is not None:
        pytest.fail(f"sshd did not start: {(tmp / 'sshd.log').read_text()[-500:]}")
    transport = SshTransport(f"ssh://{getpass.getuser()}@127.0.0.1:{port}", identity=tmp / "user_key",
                             options={"UserKnownHostsFile": str(tmp / "known_hosts"), "StrictHostKeyChecking": "accept-new"})
    yield transport
    proc.terminate()
    proc.wait(timeout=10)


@pytest.mark.integration
def test_ssh_copies_runs_collects_and_cleans_up(sshd, tmp_path):
    script = tmp_path / "runner.py"
    script.write_text(ECHO_RUNNER)
    model = tmp_path / "model with space.bin"  # quoting: never through a local shell
    model.write_bytes(b"y" * 1234)
    r = sshd.run([sys.executable, script, "--model", model, "--note", "$(touch /tmp/pwned); 'x'"], timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model_bytes"] == 1234 and out["argv"][-1] == "$(touch /tmp/pwned); 'x'"
    assert out["cwd"].startswith("/tmp/matedge.") and not os.path.exists(out["cwd"])  # removed after the run
    crash = sshd.run([sys.executable, script, "--model", model, "--crash"], timeout=60)
    assert crash.returncode == 3 and "runner exploded" in crash.stderr
    assert "cpu_model" in sshd.describe()


@pytest.mark.integration
def test_ssh_wrong_key_is_refused_with_one_line(sshd, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    stranger = SshTransport(sshd.url, identity=tmp_path / "other",
                            options={"UserKnownHostsFile": str(tmp_path / "kh"), "StrictHostKeyChecking": "accept-new"})
    with pytest.raises(TransportError, match="unreachable or refused"):
        stranger.run(["true"], timeout=30)


@pytest.mark.slow
@pytest.mark.integration
def test_ssh_runs_the_native_runner_on_a_program(sshd, tmp_path):
    """The real thing over ssh: copy matedge_runner and a .pte, benchmark, collect the JSON."""
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed (.ci/run installs it)")
    pytest.importorskip("executorch")
    from edge.device.cpp_runner import ensure_cpp_runner
    from edge.device.runners import measure_artifact
    from edge.device.profiles import load_profile

    script = tmp_path / "make.py"
    script.write_text(
        "import sys, torch\nfrom executorch.exir import to_edge_transform_and_lower\n"
        "from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner\n"
        "m = torch.nn.Linear(8, 8).eval().requires_grad_(False)\n"
        "eps = {n: torch.export.export(m, (torch.zeros(1, t, 8),)) for n, t in (('prefill', 4), ('decode', 1))}\n"
        "open(sys.argv[1], 'wb').write(to_edge_transform_and_lower(eps, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)\n")
    pte = tmp_path / "lin.pte"
    r = subprocess.run([sys.executable, str(script), str(pte)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1000:]
    ensure_cpp_runner()
    meas = measure_artifact(sshd, load_profile("host"), pte, runs=5, warmup=1, timeout=60)
    assert meas["decode_ms"] > 0 and meas["prefill_ms"] > 0 and 0 < meas["peak_rss_bytes"] < 60 * 2**20


# -- hostile transport strings: nothing can become an ssh, scp or adb option --------------------------
OPTION_LIKE = ["ssh://-Fevil.cfg", "ssh://-J", "ssh://-V", "ssh://-oProxyCommand=touch@host", "ssh://me@-oProxyCommand",
               "ssh://_x@-F", "adb:-Hevil", "adb:-s", "adb:-L"]


@pytest.mark.parametrize("url", OPTION_LIKE)
def test_option_like_user_host_or_serial_is_refused(url):
    with pytest.raises(TransportError, match="start with a letter or digit"):
        get_transport(url)


def _after_double_dash(argv: list[str], destination: str) -> bool:
    return "--" in argv and argv.index("--") < argv.index(destination)


def test_ssh_and_scp_end_their_options_before_the_destination(tmp_path):
    f = tmp_path / "a:b.bin"  # a colon in a local name: scp must not read it as host:path
    f.write_bytes(b"x")
    t = SshTransport("ssh://me@board.local:2222")
    assert _after_double_dash(t._shell("true"), "me@board.local")
    scp = t.push_argv([f], "/tmp/x")
    assert _after_double_dash(scp, "me@board.local:/tmp/x/") and str(f.resolve()) in scp
    assert scp.index(str(f.resolve())) > scp.index("--") and str(f.resolve()).startswith("/")


@pytest.mark.integration
def test_ssh_with_double_dash_reaches_a_real_sshd(sshd, tmp_path):
    """The '--' form is what OpenSSH accepts: a file with a colon in its name copies and runs."""
    script = tmp_path / "runner.py"
    script.write_text(ECHO_RUNNER)
    model = tmp_path / "odd:name.bin"
    model.write_bytes(b"z" * 77)
    r = sshd.run([sys.executable, script, "--model", model], timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["model_bytes"] == 77, r.stderr


FAKE_ADB = """\
#!/usr/bin/env python3
# A stand-in adb: logs its argv, then acts like `adb -s SERIAL shell -- LINE` / `push -- FILES DEST`
# on this machine (the device folder lives under $FAKE_ADB_ROOT).
import json, os, shutil, subprocess, sys
args = sys.argv[1:]
with open(os.environ["FAKE_ADB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:1] == ["-s"]:
    args = args[2:]
root = os.environ["FAKE_ADB_ROOT"]
if args[0] == "shell":
    assert args[1] == "--", args
    line = args[2].replace("/data/local/tmp", root)
    r = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
    sys.stdout.write(r.stdout.replace(root, "/data/local/tmp")); sys.stderr.write(r.stderr); sys.exit(r.returncode)
if args[0] == "push":
    assert args[1] == "--", args
    dest = args[-1].replace("/data/local/tmp", root)
    for f in args[2:-1]:
        shutil.copy(f, dest)
    sys.exit(0)
sys.exit(1)
"""


def test_adb_ends_its_options_before_the_device_command(tmp_path, monkeypatch):
    """adb over a stand-in adb executable: every argv has '--' before the command or files, and
    the protocol (make folder, push, run, clean up) works through it."""
    from edge.device.transports import AdbTransport

    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "adb").write_text(FAKE_ADB.replace("#!/usr/bin/env python3", f"#!{sys.executable}"))
    (bindir / "adb").chmod(0o755)
    (tmp_path / "root").mkdir()
    log = tmp_path / "adb.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_ADB_LOG", str(log))
    monkeypatch.setenv("FAKE_ADB_ROOT", str(tmp_path / "root"))
    script = tmp_path / "runner.sh"
    script.write_text("#!/bin/sh\necho \"{\\\"args\\\": \\\"$*\\\"}\"\n")
    r = AdbTransport("adb:emulator-5554").run([script, "--model", "x"], timeout=30)
    assert r.returncode == 0 and json.loads(r.stdout)["args"] == "--model x", r.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) >= 4 and all(c[:2] == ["-s", "emulator-5554"] and c[3] == "--" for c in calls)
    assert not any((tmp_path / "root" / "matedge").iterdir())  # the run folder was removed
