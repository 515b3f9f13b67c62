"""`python -m svformer` whose process sends itself a signal while its Nth training step runs, as a scheduler's
or a crash would arrive: a test stops a run at a known step instead of racing it with a timer.

Environment: ``SIGNAL_AT`` (the step, counted from 1 in this process), ``SIGNAL`` (a name, SIGTERM by
default), ``SIGNAL_RANK`` (under torchrun: only this rank signals itself, and only in the job's first
attempt, so a restarted job runs through)."""
import os
import signal
import sys

import svformer.engine.trainer as trainer
from svformer.cli import main

at, calls = int(os.environ["SIGNAL_AT"]), []
sig = signal.Signals[os.environ.get("SIGNAL", "SIGTERM")]
armed = (os.environ.get("SIGNAL_RANK") in (None, os.environ.get("RANK"))
         and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0")
original = trainer.train_step


def step(*args, **kwargs):
    calls.append(1)
    if armed and len(calls) == at:
        os.kill(os.getpid(), sig)
    return original(*args, **kwargs)


trainer.train_step = step
sys.exit(main(sys.argv[1:]))
