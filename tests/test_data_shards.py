"""Tar shards: streaming, bad samples skipped, and disjoint + covering splits across ranks and workers."""
import json
import tarfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from data_fixtures import clip_indices, index_frames
from videoldm.data import ShardDataset, SkippedFileWarning, collate_clips, write_shards
from videoldm.data.io import mp4_bytes
from videoldm.data.shards import expand_shards, folder_to_shards

N = 11


def _make_shards(tmp_path, per_shard=3, bad=True):
    samples = []
    for i in range(N):
        fields = {"mp4": mp4_bytes(index_frames(16, 16, 32, offset=i), 24),
                  "json": json.dumps({"caption": f"clip {i}", "attributes": {"i": i}}).encode()}
        samples.append((f"s{i:03d}", fields))
    if bad:
        samples.insert(4, ("broken", {"mp4": b"not a video" * 20, "txt": b"broken"}))
        samples.insert(8, ("novideo", {"txt": b"caption only"}))
    return write_shards(samples, tmp_path / "shards", per_shard=per_shard)


def _keys(ds, num_workers=0):
    loader = DataLoader(ds, batch_size=2, num_workers=num_workers, collate_fn=collate_clips)
    return [m["key"] for _, metas in loader for m in metas]


def test_stream_read_captions_and_skips(tmp_path):
    paths = _make_shards(tmp_path)
    assert len(paths) == 5 and expand_shards(str(tmp_path / "shards" / "shard-{000000..000004}.tar")) == [str(p) for p in paths]
    ds = ShardDataset(tmp_path / "shards", num_frames=4, fps=8, start="first", shuffle_shards=False)
    with pytest.warns(SkippedFileWarning):
        items = list(ds)
    assert [m["key"] for _, m in items] == [f"s{i:03d}" for i in range(N)]
    video, meta = items[3]
    assert video.shape == (3, 4, 16, 32) and meta["caption"] == "clip 3" and meta["attributes"] == {"i": 3}
    assert clip_indices(video) == [3, 6, 9, 12]  # offset 3, frames 0, 3, 6, 9 at 8 fps from 24 fps
    assert set(k.split("#")[1] for k in ds.skipped) == {"broken", "novideo"}


@pytest.mark.parametrize("split,per_shard", [("shard", 3), ("sample", 6)])
def test_rank_and_worker_split_is_disjoint_and_covering(tmp_path, split, per_shard):
    _make_shards(tmp_path, per_shard=per_shard, bad=False)
    seen = []
    for rank in range(2):
        ds = ShardDataset(tmp_path / "shards", num_frames=2, fps=8, rank=rank, world_size=2, split=split, seed=1)
        ds.set_epoch(3)
        seen += _keys(ds, num_workers=2)  # 2 ranks x 2 workers = 4 readers
    assert sorted(seen) == [f"s{i:03d}" for i in range(N)]


def test_split_errors_and_missing_shards(tmp_path):
    _make_shards(tmp_path, per_shard=6, bad=False)  # 2 shards
    with pytest.raises(ValueError, match="needs at least 4 shards"):
        next(iter(ShardDataset(tmp_path / "shards", rank=0, world_size=4, split="shard")))
    with pytest.raises(ValueError, match="no .tar shards"):
        ShardDataset(tmp_path / "nothing-*.tar")
    with pytest.raises(FileNotFoundError, match="shard not found"):
        ShardDataset(tmp_path / "missing.tar")


def test_truncated_shard_is_skipped_not_fatal(tmp_path):
    paths = _make_shards(tmp_path, per_shard=6, bad=False)
    data = paths[0].read_bytes()
    paths[0].write_bytes(data[: len(data) // 2])
    ds = ShardDataset(paths, num_frames=2, fps=8, shuffle_shards=False)
    with pytest.warns(SkippedFileWarning):
        keys = [m["key"] for _, m in ds]
    assert keys[-5:] == [f"s{i:03d}" for i in range(6, 11)] and str(paths[0]) in ds.skipped


def test_folder_to_shards(tmp_path):
    from videoldm.data.io import write_mp4
    for i in range(3):
        write_mp4(tmp_path / "v" / f"{i}.mp4", index_frames(16, 16, 32), 24)
        (tmp_path / "v" / f"{i}.txt").write_text(f"video {i}")
    paths = folder_to_shards(tmp_path / "v", tmp_path / "s", per_shard=2)
    assert len(paths) == 2
    with tarfile.open(paths[0]) as tf:
        assert tf.getnames() == ["00000000.mp4", "00000000.json", "00000001.mp4", "00000001.json"]
    caps = sorted(m["caption"] for _, m in ShardDataset(paths, num_frames=2, fps=8))
    assert caps == ["video 0", "video 1", "video 2"]


def _dist_worker(rank, world, init_file, shard_dir, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.set_num_threads(1)
    ds = ShardDataset(shard_dir, num_frames=2, fps=8, seed=0)  # rank/world from torch.distributed
    keys = [m["key"] for _, m in ds]
    gathered = [None] * world
    dist.all_gather_object(gathered, keys)
    if rank == 0:
        with open(f"{out_dir}/keys.json", "w") as f:
            json.dump(gathered, f)
    dist.destroy_process_group()


def test_two_process_gloo_read_is_disjoint_and_covering(tmp_path):
    _make_shards(tmp_path, per_shard=3, bad=False)  # 4 shards for 2 ranks
    # fork: the children skip re-importing torch (spawn costs ~10 s here); gloo is not yet initialised.
    mp.start_processes(_dist_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "shards"), str(tmp_path)),
                       nprocs=2, join=True, start_method="fork")
    per_rank = json.loads((tmp_path / "keys.json").read_text())
    assert all(per_rank) and not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == [f"s{i:03d}" for i in range(N)]


def test_an_interrupted_write_leaves_only_whole_shards(tmp_path):
    from videoldm.data.shards import expand_shards

    def samples():
        for i in range(150):
            yield f"k{i:03d}", {"txt": b"x"}
        raise KeyboardInterrupt  # Ctrl-C in the middle of the second shard

    with pytest.raises(KeyboardInterrupt):
        write_shards(samples(), tmp_path / "out", per_shard=100)
    found = expand_shards(str(tmp_path / "out"))
    assert [p.split("/")[-1] for p in found] == ["shard-000000.tar"]
    with tarfile.open(found[0]) as tf:
        assert len(tf.getnames()) == 100
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shard-000000.tar"]  # the cut-off one is gone
