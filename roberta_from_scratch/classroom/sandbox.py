"""Start a command confined behind an operating-system boundary, with bubblewrap (Debian's ``bubblewrap``).

The autograder (``grade.py``) starts each student kernel as ``confined_command(...)``: ``bwrap`` puts it in new user,
network, PID, IPC, UTS and cgroup namespaces (no network, not even the machine's own services; no view of any other
process; its own session, so no signal of the grader's terminal reaches it and it can signal nothing outside),
with a file system made of

- read-only: the system's programs and libraries (``/usr`` and its links), the Python installation, the
  virtual environment, and this package's own folder (not the checkout around it: the course notebooks, with
  their reference solutions and hidden tests, are not visible at all);
- read-write: the submission's working folder (a fresh temporary copy) and the folder of the kernel's Unix
  sockets, nothing else of the grader's machine;
- fresh, empty, size-limited and private to this one kernel: ``HOME`` (so ``IPYTHONDIR``), ``/tmp`` (``TMPDIR``);
  a kernel restarted after a crash gets new ones.

Inside, ``python -m roberta_from_scratch.classroom.sandbox`` sets the resource limits (``setrlimit``: CPU time, address space,
processes and threads, size of a written file), gives the command /dev/null as input and a log file as output,
and then becomes the command:

    python -m roberta_from_scratch.classroom.sandbox [--cpu-seconds S] [--memory-bytes B] [--processes N] [--file-bytes B]
        [--log FILE] -- COMMAND ...

``why_unconfined()`` says, in one line, why bubblewrap cannot confine here (not installed, or the kernel refuses
it unprivileged user namespaces); the grader then refuses to grade unless told ``--unconfined``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

HOME = "/home/student"  # inside the sandbox
# Files of /etc that a Python process may read (users, name service, dynamic linker, time zone); the rest of /etc
# (shadow passwords, keys, the grader's configuration) is not there.
ETC = ("/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/ld.so.cache", "/etc/ld.so.conf",
       "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives", "/etc/fonts", "/etc/mime.types")
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


def bwrap() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def why_unconfined() -> str | None:
    """None where bubblewrap can confine a process here, else why not (asked of a real, confined ``true``)."""
    program = bwrap()
    if program is None:
        return ("bubblewrap is not installed (Debian, Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install "
                "bubblewrap`)")
    probe = [program, "--unshare-all", "--die-with-parent", "--new-session",
             *[arg for path in SYSTEM if os.path.exists(path) for arg in ("--ro-bind", path, path)],
             "--proc", "/proc", "--dev", "/dev", "--", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"bubblewrap could not start ({error})"
    if done.returncode != 0:
        return (f"bubblewrap cannot create namespaces here ({done.stderr.strip() or done.returncode}); unprivileged "
                "user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1)")
    return None


def readable_roots() -> list[str]:
    """What the kernel may read besides the system: the Python installation, the environment, this package."""
    package = str(Path(__file__).resolve().parents[1])  # the whole package, not this wing
    roots = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    roots.add(package)
    # a root inside another is bound with it; the package of a non-editable install lies inside sys.prefix
    return sorted(r for r in roots if not any(r != o and r.startswith(o + os.sep) for o in roots))


def confined_command(command: list[str], *, writable: list[str | os.PathLike], workdir: str | os.PathLike,
                     env: dict[str, str], home_bytes: int = 256 * 2**20, tmp_bytes: int = 2 * 2**30) -> list[str]:
    """The bwrap command line that runs ``command`` as described in the module docstring. ``writable`` folders are
    bound read-write at their own paths; ``workdir`` is where the command starts; ``env`` is its whole environment
    (HOME, IPYTHONDIR, TMPDIR and the cache folders are set to the sandbox's own)."""
    program = bwrap()
    if program is None:
        raise RuntimeError(why_unconfined())
    # The private /tmp and HOME first: a folder bound afterwards (an environment or a checkout that lies under /tmp,
    # as in a CI clone) is mounted on top of them instead of being hidden by them.
    args = [program, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
            "--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/tmp",
            "--size", str(home_bytes), "--tmpfs", HOME]
    for path in SYSTEM:
        if os.path.lexists(path):
            args += ["--ro-bind", path, path] if not os.path.islink(path) else ["--symlink", os.readlink(path), path]
    for path in ETC:
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    for root in readable_roots():
        args += ["--ro-bind", root, root]
    for path in writable:
        args += ["--bind", str(path), str(path)]
    inside = {**env, "HOME": HOME, "IPYTHONDIR": f"{HOME}/.ipython", "TMPDIR": "/tmp", "MPLCONFIGDIR": "/tmp/mpl",
              "XDG_CACHE_HOME": f"{HOME}/.cache", "XDG_CONFIG_HOME": f"{HOME}/.config", "HF_HOME": f"{HOME}/.hf",
              "PYTHONNOUSERSITE": "1"}
    for key, value in sorted(inside.items()):
        args += ["--setenv", key, value]
    return [*args, "--chdir", str(workdir), "--", *command]


def set_limits(cpu_seconds: int | None, memory_bytes: int | None, processes: int | None,
               file_bytes: int | None) -> None:
    import resource

    for limit, value in ((resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_AS, memory_bytes),
                         (resource.RLIMIT_NPROC, processes), (resource.RLIMIT_FSIZE, file_bytes)):
        if value:
            soft, hard = resource.getrlimit(limit)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (value, value))  # hard as well: the command cannot raise it again


def detach_descriptors(log: str | None) -> None:
    """The command gets /dev/null as its input and a log file (or /dev/null) as its output, and no other inherited
    descriptor: it cannot write into the grader's own output (a forged report) or read its input."""
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if log else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.closerange(3, 65536)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit("usage: python -m roberta_from_scratch.classroom.sandbox [options] -- COMMAND ...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch.classroom.sandbox")
    parser.add_argument("--cpu-seconds", type=int)
    parser.add_argument("--memory-bytes", type=int)
    parser.add_argument("--processes", type=int)
    parser.add_argument("--file-bytes", type=int)
    parser.add_argument("--log", help="where the command's standard output and error go (default: nowhere)")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        sys.exit("sandbox: no command to run after --")
    set_limits(args.cpu_seconds, args.memory_bytes, args.processes, args.file_bytes)
    detach_descriptors(args.log)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
