"""Helpers of the reliability tests: a CLI runner with a write audit of the inputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys

# Runs the CLI in a child that logs every Python-level open()/mmap of the watched paths with a
# write mode (os.open flags or a mode string), so "opened read-only" is checked even as root,
# where chmod 444 does not stop a write.
_AUDIT_MAIN = r"""
import json, os, sys
watched = [os.path.realpath(p) for p in json.loads(os.environ["TT_WATCH"])]
log = os.environ["TT_AUDIT_LOG"]
def _hook(event, args):
    if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path = os.path.realpath(os.fsdecode(args[0]))
    if not any(path == w or path.startswith(w + os.sep) for w in watched):
        return
    mode, flags = args[1], args[2]
    write = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND))
    if write:
        with open(log, "a") as f:   # the log is not watched: no recursion
            f.write(json.dumps([path, str(mode), flags]) + "\n")
sys.addaudithook(_hook)
from temtrack.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli_command(*args, watch=(), audit_log=None) -> tuple[list[str], dict]:
    """argv and environment of ``python -m temtrack ARGS`` (with the write audit when ``watch``)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if watch:
        env.update(TT_WATCH=json.dumps([str(w) for w in watch]), TT_AUDIT_LOG=str(audit_log))
        return [sys.executable, "-c", _AUDIT_MAIN, *map(str, args)], env
    return [sys.executable, "-m", "temtrack", *map(str, args)], env


def run_cli(*args, watch=(), audit_log=None, timeout=300, cwd=None) -> subprocess.CompletedProcess:
    argv, env = cli_command(*args, watch=watch, audit_log=audit_log)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
