import subprocess
import sys

from svformer.cli import main


def test_list_models(capsys):
    assert main(["list-models"]) == 0
    assert "svformer_paper" in capsys.readouterr().out.split()


def test_info_prints_params_and_macs(capsys):
    assert main(["info", "svformer_paper"]) == 0
    out = capsys.readouterr().out
    assert "13,801,612" in out and "38.1896 G" in out


def test_info_bad_override_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "svformer", "info", "svformer_tiny", "--set", "foo=1"],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "foo" in r.stderr
