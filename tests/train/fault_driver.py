"""Runs ``metamap`` with a SIGKILL injected at an exact moment of a file write (for test_faults).

``python fault_driver.py CALL NAME N -- metamap-args...`` kills the process with SIGKILL at the
N-th call (1-based) of ``os.CALL`` that concerns a file called NAME:

* ``fsync``: the data of a temporary for NAME are written but neither synced nor renamed (a kill
  in the middle of a checkpoint or metrics write);
* ``replace``: the temporary is complete and synced, and the rename over NAME is next.

Only the trainer's own code paths run; nothing in metamap is replaced.
"""

import os
import signal
import sys
from pathlib import Path
from typing import Any

from metamap.cli import main


def _inject(call: str, name: str, n: int) -> None:
    real = getattr(os, call)
    seen = 0

    def concerns(args: tuple[Any, ...]) -> bool:
        if call == "replace":
            return Path(args[1]).name == name
        target = os.readlink(f"/proc/self/fd/{args[0]}")  # fsync(fd): the file behind it
        return Path(target).name.startswith(f".{name}.")

    def wrapped(*args: Any) -> Any:
        nonlocal seen
        if concerns(args):
            seen += 1
            if seen == n:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args)

    setattr(os, call, wrapped)


if __name__ == "__main__":
    call, name, n, sep, *argv = sys.argv[1:]
    assert sep == "--" and call in ("fsync", "replace")
    _inject(call, name, int(n))
    sys.exit(main(argv))
