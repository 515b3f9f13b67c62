"""Nothing but `data synth` and the demo writes into a data root, and never over files it did not write."""
import hashlib
import os

import pytest

from svformer.cli import main
from svformer.config import load_config
from svformer.data.dvs_gesture import DVSGesture, write_synthetic_gesture
from svformer.data.synthetic import SynthConfig, SyntheticRootError, write_ucf_layout
from svformer.engine.trainer import train

from ..data.test_lists_datasets import make_ucf
from .helpers import overrides

SMALL = SynthConfig(size=32, num_frames=8, train_groups=2, test_groups=1, clips_per_group=1)


def snapshot(root):
    """Every file under ``root`` with its content hash and modification time."""
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            p = os.path.join(folder, f)
            out[p] = (hashlib.sha1(open(p, "rb").read()).hexdigest(), os.stat(p).st_mtime_ns)
    return out


def test_testing_a_synthetic_checkpoint_on_a_users_dataset_writes_nothing(tmp_path, capsys):
    train(load_config("demo", overrides(tmp_path, "run", **{"optim.epochs": 1})), test=False)
    run = tmp_path / "run"
    config_before = (run / "config.yaml").read_bytes(), os.stat(run / "config.yaml").st_mtime_ns
    users = make_ucf(tmp_path / "users_ucf")  # a real UCF101 layout, 3 classes
    before = snapshot(users)
    with pytest.raises(SystemExit, match="trained on 10 classes .* has 3"):
        main(["test", str(run / "last.pt"), f"data.root={users}"])
    assert snapshot(users) == before  # not one file written, rewritten or touched
    assert ((run / "config.yaml").read_bytes(), os.stat(run / "config.yaml").st_mtime_ns) == config_before
    # Testing on its own data works and still rewrites no config.
    assert main(["test", str(run / "last.pt")]) == 0
    assert os.stat(run / "config.yaml").st_mtime_ns == config_before[1]


def test_synthetic_writers_never_write_over_other_files(tmp_path):
    users = make_ucf(tmp_path / "ucf")
    before = snapshot(users)
    with pytest.raises(SyntheticRootError, match="holds files svformer did not write"):
        write_ucf_layout(str(users), SMALL)
    with pytest.raises(SyntheticRootError, match="holds files svformer did not write"):
        write_synthetic_gesture(str(users), users_train=1, users_test=1, num_classes=2)
    assert snapshot(users) == before
    with pytest.raises(SystemExit, match="holds files svformer did not write"):
        main(["data", "synth", "--out", str(users)])
    assert snapshot(users) == before


def test_another_seed_does_not_rewrite_a_shared_synthetic_dataset(tmp_path):
    root = str(tmp_path / "shared")
    write_ucf_layout(root, SMALL, seed=0)
    before = snapshot(root)
    assert write_ucf_layout(root, SMALL, seed=0) == root and snapshot(root) == before  # cached
    with pytest.raises(SyntheticRootError, match="another configuration or seed"):
        write_ucf_layout(root, SMALL, seed=1)
    with pytest.raises(SystemExit, match="another configuration or seed"):
        main(["train", "demo", *overrides(tmp_path, "run", seed=5, **{"data.root": root})])
    assert snapshot(root) == before


def test_a_half_written_synthetic_dataset_is_finished_not_refused(tmp_path, monkeypatch):
    import svformer.data.synthetic as synthetic

    root = str(tmp_path / "half")
    calls = []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)
    import svformer.data.video as video
    original = video.write_video
    monkeypatch.setattr(video, "write_video", dying)
    with pytest.raises(KeyboardInterrupt):
        synthetic.write_ucf_layout(root, SMALL)
    monkeypatch.undo()
    assert synthetic.write_ucf_layout(root, SMALL) == root  # its own unfinished folder: written again
    assert os.path.isfile(os.path.join(root, "ucfTrainTestlist", "testlist01.txt"))


def test_event_cache_lives_outside_the_dataset(tmp_path):
    root = write_synthetic_gesture(str(tmp_path / "DvsGesture"), users_train=1, users_test=1, lightings=("lab",),
                                   num_classes=2, frames_per_sample=6)
    before = snapshot(root)
    ds = DVSGesture(root, "train", num_frames=4)
    ds[0]
    assert snapshot(root) == before
    cache = os.environ["XDG_CACHE_HOME"]
    assert ds.cache_dir.startswith(cache) and os.listdir(ds.cache_dir)
