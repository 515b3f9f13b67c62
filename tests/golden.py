"""The authors' golden fixtures (tests/fixtures/reference/) and the SVFormer built from a fixture's config."""
import torch

from svformer import SVFormer, load_official

from .conftest import REFERENCE


def reference_path(name):
    path = REFERENCE / name
    assert path.exists(), f"golden fixture {path} missing from the repository"
    return path


def load_golden(name="official_small.pt"):
    return torch.load(reference_path(name), weights_only=True)


def model_from_config(cfg, **kwargs):
    return SVFormer(num_classes=cfg["num_classes"], in_chans=cfg["in_chans"], img_size=cfg["img_size"],
                    num_frames=cfg["T"], embed_dim=cfg["embed_dim"], depth=cfg["depth"],
                    head_dim=cfg["head_dim"], mlp_ratio=cfg["mlp_ratio"], **kwargs)


def golden_model(golden):
    """The fixture's model with the authors' weights loaded."""
    return load_official(model_from_config(golden["config"]), golden["state_dict"])
