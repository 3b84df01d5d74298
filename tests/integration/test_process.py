"""ess-it-process: the ess-push process contract -- --help, --version, exit
codes from sysexits.h, positioned manifest errors, --check."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from esslib import BIN, SRC, check, run  # noqa: E402

PUSH = os.path.join(BIN, "workers", "push", "ess-push")


def push(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([PUSH] + list(args), capture_output=True, text=True, timeout=30, env=e)
    return p.returncode, p.stdout, p.stderr


def write(text):
    fd, path = tempfile.mkstemp(suffix=".yml")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def test_help_and_version():
    code, out, _ = push("--help")
    check(code == 0 and "--manifest" in out and "SIGHUP" in out, "help: %d %r" % (code, out))
    code, out, _ = push("--version")
    check(code == 0 and out.startswith("ess-push "), "version: %d %r" % (code, out))


def test_usage_errors_exit_64():
    for args in [(), ("--bogus",), ("--manifest",)]:
        code, _, err = push(*args)
        check(code == 64, "%r: exit %d, want 64 (%s)" % (args, code, err))


def test_bad_manifest_exit_65_positioned():
    path = write("id: city2dmv\nkind: push\nlisten_topic: a.b\nkey: k\n"
                 "target_url: http://127.0.0.1:1/x\nheartbeat_sec: often\n")
    code, _, err = push("--manifest", path)
    check(code == 65, "exit %d, want 65: %s" % (code, err))
    check("%s:6:16: heartbeat_sec:" % path in err, "positioned error: %s" % err)


def test_missing_file_and_secret_env_exit_78():
    code, _, err = push("--manifest", "/nonexistent/m.yml")
    check(code == 78, "missing file: exit %d, want 78: %s" % (code, err))
    path = write("id: city2dmv\nkind: push\nlisten_topic: a.b\nkey: k\n"
                 "target_url: http://127.0.0.1:1/x\n"
                 "auth: {type: hmac, secret_env: ESS_IT_NOT_SET_SECRET}\n")
    os.environ.pop("ESS_IT_NOT_SET_SECRET", None)
    code, _, err = push("--manifest", path)
    check(code == 78 and "ESS_IT_NOT_SET_SECRET" in err, "unset secret: %d %s" % (code, err))


def test_check_mode_on_shipped_manifest():
    code, out, err = push("--check", "--manifest", os.path.join(SRC, "manifests", "city2dmv.yml"))
    check(code == 0 and out.startswith("manifest OK: city2dmv"), "check: %d %r %s" % (code, out, err))


if __name__ == "__main__":
    run([test_help_and_version, test_usage_errors_exit_64, test_bad_manifest_exit_65_positioned,
         test_missing_file_and_secret_env_exit_78, test_check_mode_on_shipped_manifest])
