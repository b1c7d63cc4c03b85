"""Start N local processes of one nnjax program, as one multi-process JAX run on this machine.

    python -m nnjax.launch --processes 2 --cpu-devices 4 -m experiments.mnist_cnn --parallel jit --workdir runs/mp

Each process gets ``JAX_COORDINATOR_ADDRESS`` (127.0.0.1 and a free port), ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID`` (read by ``nnjax.distributed``), and with ``--cpu-devices`` its number of CPU devices.
Every line a process prints comes out prefixed with its index (``[0] ...``), stdout on stdout and stderr on
stderr. If a process fails, the launcher stops the others (SIGTERM, then SIGKILL after ``--grace`` seconds)
and exits with that process's code after one line naming it and its last stderr line; ``--timeout`` bounds
the whole run. The exit code is 0 only when every process exits 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO

from nnjax.distributed import COORDINATOR_ENV, CPU_DEVICES_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_environment(index: int, processes: int, port: int, cpu_devices: int | None) -> dict[str, str]:
    """The environment of process ``index``: this one's plus the multi-process settings."""
    env = dict(os.environ)
    env |= {COORDINATOR_ENV: f"127.0.0.1:{port}", NUM_PROCESSES_ENV: str(processes), PROCESS_ID_ENV: str(index)}
    if cpu_devices:
        env[CPU_DEVICES_ENV] = str(cpu_devices)
        env.setdefault("JAX_PLATFORMS", "cpu")
        flags = env.get("XLA_FLAGS", "").split()  # the older way to ask for CPU devices would contradict it
        env["XLA_FLAGS"] = " ".join(f for f in flags if not f.startswith("--xla_force_host_platform_device_count"))
    return env


LAST_LINE_CHARS = 300


def _relay(stream: IO[str], out: IO[str], prefix: str, last: list[str], lock: threading.Lock) -> None:
    """Copy ``stream`` to ``out`` line by line with ``prefix``; keep the last non-empty line in ``last`` (its first
    ``LAST_LINE_CHARS`` characters: the whole line is in the output above)."""
    for line in stream:
        if line.strip() and "%|" not in line:  # a progress bar is not the line that says what went wrong
            text = line.rstrip("\n")
            last[:] = [text if len(text) <= LAST_LINE_CHARS else text[:LAST_LINE_CHARS] + " ..."]
        with lock:
            out.write(prefix + line)
            out.flush()


def launch(command: Sequence[str], processes: int, cpu_devices: int | None = None, timeout: float | None = None,
           grace: float = 10.0) -> int:
    """Run ``command`` (an argv) as ``processes`` cooperating processes; returns the exit code (see the module)."""
    port, lock = free_port(), threading.Lock()
    children, relays, last_err = [], [], []
    for index in range(processes):
        child = subprocess.Popen(list(command), env=process_environment(index, processes, port, cpu_devices),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        last_err.append([])
        for stream, out, keep in ((child.stdout, sys.stdout, []), (child.stderr, sys.stderr, last_err[index])):
            relay = threading.Thread(target=_relay, args=(stream, out, f"[{index}] ", keep, lock), daemon=True)
            relay.start()
            relays.append(relay)
        children.append(child)
    deadline = None if timeout is None else time.monotonic() + timeout
    failed, reason = None, ""
    while failed is None and any(child.poll() is None for child in children):
        failed = next((i for i, child in enumerate(children) if child.poll() not in (None, 0)), None)
        if failed is None and deadline is not None and time.monotonic() > deadline:
            failed, reason = -1, f"the run took longer than --timeout {timeout:g} s"
        time.sleep(0.1)
    if failed is None:
        failed = next((i for i, child in enumerate(children) if child.returncode != 0), None)
    if failed is not None:
        _stop(children, grace)
    for relay in relays:
        relay.join(timeout=5)
    if failed is None:
        return 0
    if failed >= 0:
        code = children[failed].returncode
        reason = f"process {failed} exited with code {code}" + (f": {last_err[failed][0]}" if last_err[failed] else "")
    else:
        code = 124
    sys.stderr.write(f"nnjax.launch: {reason}; the other processes were stopped\n")
    return code if code and code > 0 else 1


def _stop(children: list[subprocess.Popen], grace: float) -> None:
    """SIGTERM every running child, then SIGKILL those still running after ``grace`` seconds."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    end = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(end - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nnjax.launch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="processes to start (default: 2)")
    parser.add_argument("--cpu-devices", type=int, default=None, help="CPU devices per process (default: JAX's)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds before every process is stopped")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (default 10)")
    parser.add_argument("-m", dest="module", required=True, help="the module to run, as python -m MODULE; every "
                        "argument after it is the module's own")
    argv = list(sys.argv[1:] if argv is None else argv)
    at = argv.index("-m") + 2 if "-m" in argv else len(argv)  # the launcher's flags end at the module's name
    args = parser.parse_args(argv[:at])
    if args.processes < 1 or (args.cpu_devices is not None and args.cpu_devices < 1):
        parser.error("--processes and --cpu-devices must be >= 1")
    return launch([sys.executable, "-m", args.module, *argv[at:]], args.processes, args.cpu_devices, args.timeout,
                  args.grace)


if __name__ == "__main__":
    sys.exit(main())
