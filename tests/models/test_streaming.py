import pytest
import torch

from svformer import SVFormer, load_official
from svformer.models.streaming import StreamingSVFormer

from ..conftest import REFERENCE


def _golden_model():
    path = REFERENCE / "official_small.pt"
    if not path.exists():
        pytest.skip("golden fixture not present")
    golden = torch.load(path, weights_only=True)
    c = golden["config"]
    model = SVFormer(num_classes=c["num_classes"], in_chans=c["in_chans"], img_size=c["img_size"], num_frames=c["T"],
                     embed_dim=c["embed_dim"], depth=c["depth"], head_dim=c["head_dim"], mlp_ratio=c["mlp_ratio"])
    return load_official(model, golden["state_dict"]).eval(), golden


def test_streaming_equals_whole_clip_after_T_frames():
    model, golden = _golden_model()
    clip = golden["input"]  # (B, C, T, H, W), calibrated so that every layer fires
    stream = StreamingSVFormer(model)
    for t in range(clip.shape[2]):
        logits = stream.step(clip[:, :, t])
    torch.testing.assert_close(logits, golden["logits_eval"], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="call reset"):
        stream.step(clip[:, :, 0])
    stream.reset()
    for t in range(clip.shape[2]):
        again = stream.step(clip[:, :, t])
    torch.testing.assert_close(again, logits, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(model(clip), golden["logits_eval"], rtol=1e-4, atol=1e-5)  # model untouched


def test_streaming_with_avgpool_head_runs_any_length():
    torch.manual_seed(0)
    model = SVFormer(num_classes=4, embed_dim=(8, 16, 24, 32), depth=(1, 1, 1, 1), head_dim=8, img_size=64,
                     num_frames=3, norm="shared", head="avgpool").eval()
    clip = torch.randn(2, 3, 5, 64, 64)
    stream = StreamingSVFormer(model)
    for t in range(5):
        logits = stream.step(clip[:, :, t])
    with torch.no_grad():
        torch.testing.assert_close(logits, model(clip), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        stream.step(clip)
