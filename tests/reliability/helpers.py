"""A tiny synthetic training run, used in-process and as a subprocess the tests can kill."""
import os
import subprocess
import sys

from ..engine.test_training import tiny_config_overrides

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIGNAL_AT_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "signal_at_step.py")


def overrides(tmp_path, run="run", **extra):
    return tiny_config_overrides(tmp_path, run, **{"data.val_fraction": 0.5, **extra})


def svformer(*args, env=None, timeout=300):
    """Run the `svformer` command in a fresh process; returns the CompletedProcess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "svformer", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=full_env)


def start(*args, env=None):
    return subprocess.Popen([sys.executable, "-m", "svformer", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, **(env or {})})
