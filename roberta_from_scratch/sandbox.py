"""Start a command confined: resource limits always, no network where the platform allows it without privileges.

    python -m roberta_from_scratch.sandbox [--cpu-seconds S] [--memory-bytes B] [--processes N] [--file-bytes B]
        [--no-network] [--status FILE] -- COMMAND ...

The autograder starts each student kernel through this wrapper (``grade.py``). Limits are set with ``setrlimit``
(CPU time, address space, processes and threads of the user, size of a written file). ``--no-network`` moves the
process into new user, network and PID namespaces (Linux, unprivileged where the kernel allows it): the new network
namespace has no interface but a loopback that is down, so nothing can be reached, not even the host's own
services, and in its own PID namespace the command cannot signal the grader, and what it leaves running ends with
it. Its standard input, output and error never are the grader's (``--log`` keeps the output in a file). The kernel then talks to the grader over Unix sockets (Jupyter's ``ipc`` transport). ``--status`` names a
file where the wrapper writes, before it starts the command, whether the network was cut and why not.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
PR_SET_PDEATHSIG = 1


def cut_network() -> str | None:
    """Enter new user, network and PID namespaces, keeping this user's uid and gid; None on success, else why
    not. In its own PID namespace the command can neither see nor signal the grader or any other process of the
    machine, and every process it leaves behind ends with it."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces exist only on Linux (this is {sys.platform})"
    uid, gid = os.getuid(), os.getgid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID) != 0:
            return f"unshare(CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID) failed: {os.strerror(ctypes.get_errno())}"
        for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/uid_map", f"{uid} {uid} 1"),
                           ("/proc/self/gid_map", f"{gid} {gid} 1")):
            with open(path, "w") as f:
                f.write(text)
    except (OSError, AttributeError) as error:
        return f"entering the namespaces failed: {error}"
    return None


def set_limits(cpu_seconds: int | None, memory_bytes: int | None, processes: int | None,
               file_bytes: int | None) -> None:
    import resource

    for limit, value in ((resource.RLIMIT_CPU, cpu_seconds), (resource.RLIMIT_AS, memory_bytes),
                         (resource.RLIMIT_NPROC, processes), (resource.RLIMIT_FSIZE, file_bytes)):
        if value:
            soft, hard = resource.getrlimit(limit)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(limit, (value, hard))


def detach_descriptors(log: str | None) -> None:
    """The command gets /dev/null as its input and a log file (or /dev/null) as its output, and no other inherited
    descriptor: it cannot write into the grader's own output (a forged report) or read its input."""
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) if log else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.closerange(3, 65536)


def run_as_init(command: list[str]) -> None:
    """Fork: the child (process 1 of the new PID namespace) runs the command and dies with this process; this
    process forwards interrupts to it and exits with its status."""
    import signal

    child = os.fork()
    if child == 0:
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        os.execvp(command[0], command)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, frame: os.kill(child, number))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)  # killed by signal N: 128 + N, as a shell reports it


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        sys.exit("usage: python -m roberta_from_scratch.sandbox [options] -- COMMAND ...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m roberta_from_scratch.sandbox")
    parser.add_argument("--cpu-seconds", type=int)
    parser.add_argument("--memory-bytes", type=int)
    parser.add_argument("--processes", type=int)
    parser.add_argument("--file-bytes", type=int)
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--status")
    parser.add_argument("--log", help="where the command's standard output and error go (default: nowhere)")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        sys.exit("sandbox: no command to run after --")
    why_not = cut_network() if args.no_network else "not requested"
    if args.status:
        with open(args.status, "w") as f:
            json.dump({"network_cut": why_not is None, "why_not": why_not}, f)
    set_limits(args.cpu_seconds, args.memory_bytes, args.processes, args.file_bytes)
    detach_descriptors(args.log)
    if why_not is None:
        run_as_init(command)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
