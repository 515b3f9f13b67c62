import pytest
import torch

from svformer import SVFormer
from svformer.models.streaming import StreamingSVFormer

from ..golden import golden_model, load_golden


def _golden_model():
    golden = load_golden("official_small.pt")
    return golden_model(golden).eval(), golden


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
