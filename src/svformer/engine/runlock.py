"""One training run per run folder.

`RunLock(run_dir)` takes an exclusive ``flock`` on ``run_dir/.lock`` for as long as the run lives. The
kernel releases it when the process ends in any way (kill -9 included), so a crashed run never leaves a
stuck lock; a second run into a folder in use is refused with the holder's process id and command.
Taking the lock also removes the temporary files a killed run may have left (nobody else can be
writing them while the lock is held).
"""
from __future__ import annotations

import fcntl
import glob
import json
import os
import sys
import time


class RunFolderInUse(RuntimeError):
    """Another live process is running in this run folder."""


class RunLock:
    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, ".lock")
        self._fd = None

    def acquire(self) -> "RunLock":
        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunFolderInUse(f"output_dir {self.run_dir} is in use by process {holder.get('pid', '?')} "
                                 f"({holder.get('command', 'svformer')}, started {holder.get('started', '?')}); "
                                 f"choose another output_dir or wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv[:3]) or "svformer",
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        for stale in glob.glob(os.path.join(self.run_dir, ".*.tmp")) + glob.glob(os.path.join(self.run_dir, "*.tmp")):
            os.remove(stale)
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode() or "{}")
    except (OSError, ValueError):
        return {}
