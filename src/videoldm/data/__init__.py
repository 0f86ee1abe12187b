"""Video data for Video LDM: video files, WebDataset shards, and procedural datasets with ground truth.

Every loader returns clips as float32 (C, T, H, W) in [-1, 1] plus a metadata dict (caption,
attributes, fps, source path, start time); batch them with `collate_clips`.
"""
from .clips import ClipSpec, SkipLog, SkippedFileWarning, collate_clips, parse_size, to_tensor
from .decode import DecodeError, VideoInfo, decode_clip, probe
from .video_folder import VIDEO_EXTENSIONS, VideoFolderDataset

__all__ = [
    "ClipSpec", "DecodeError", "SkipLog", "SkippedFileWarning", "VIDEO_EXTENSIONS", "VideoFolderDataset",
    "VideoInfo", "collate_clips", "decode_clip", "parse_size", "probe", "to_tensor",
]

from .shards import ShardDataset, folder_to_shards, write_shards  # noqa: E402

__all__ += ["ShardDataset", "folder_to_shards", "write_shards"]
