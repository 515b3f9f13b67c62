"""The data layer: video decoding, clip sampling, transforms, dataset lists, DVS128 Gesture events,
synthetic datasets in the real formats, and a dataset doctor.

Clips are (C, T, H, W) per item and (B, C, T, H, W) per batch.
"""
from .build import DATASETS, video_samples
from .lists import DatasetLayoutError, VideoSample, split_validation
from .sampling import ClipSpec, RandomClipSampler, UniformClipSampler
from .transforms import Mixup, TestTransform, TrainTransform
from .video import VideoError, VideoInfo, VideoReader, write_video
from .video_dataset import VideoClipDataset, collate_clips

__all__ = ["ClipSpec", "DATASETS", "DatasetLayoutError", "Mixup", "RandomClipSampler", "TestTransform",
           "TrainTransform", "UniformClipSampler", "VideoClipDataset", "VideoError", "VideoInfo", "VideoReader",
           "VideoSample", "collate_clips", "split_validation", "video_samples", "write_video"]
