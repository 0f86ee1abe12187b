"""`videoldm data synth | inspect | shard`: outputs readable by the datasets, reports, clear errors."""
import json

import pytest

from videoldm.cli import main
from videoldm.data import ShardDataset, VideoFolderDataset


def test_synth_inspect_shard_round_trip(tmp_path, capsys):
    out = tmp_path / "shapes"
    assert main(["data", "synth", "--kind", "shapes", "--num", "3", "--frames", "8", "--size", "32x32",
                 "--fps", "8", "--out", str(out), "--previews", "1"]) == 0
    assert (out / "manifest.jsonl").is_file() and (out / "previews" / "shapes_00000.gif").is_file()
    ds = VideoFolderDataset(out, num_frames=8, fps=8)
    assert len(ds) == 3 and ds[0][1]["caption"].endswith("background")
    (out / "notes.mp4").write_text("not a video")  # not in the manifest: ignored by the dataset
    capsys.readouterr()
    assert main(["data", "inspect", str(out), "--frames", "16", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["clips"] == 3 and rep["fps"] == {"8": 3} and rep["resolution"] == {"32x32": 3} and rep["too_short"] == 3
    assert main(["data", "synth", "--kind", "shapes", "--num", "1", "--out", str(out)]) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err

    assert main(["data", "shard", str(out), "--out", str(tmp_path / "sh"), "--per-shard", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "sh").iterdir()) == ["shard-000000.tar", "shard-000001.tar"]
    assert len(list(ShardDataset(tmp_path / "sh", num_frames=4, fps=8))) == 3


def test_inspect_reports_unreadable_files(tmp_path, capsys):
    main(["data", "synth", "--kind", "driving", "--num", "1", "--frames", "4", "--size", "32x64", "--out", str(tmp_path)])
    (tmp_path / "manifest.jsonl").unlink()  # plain folder scan
    (tmp_path / "bad.mkv").write_text("garbage")
    capsys.readouterr()
    assert main(["data", "inspect", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "2 clips, 1 readable, 1 unreadable" in text and "bad.mkv" in text


@pytest.mark.parametrize("argv,message", [
    (["data", "inspect", "/no/such/place"], "not a folder or shard"),
    (["data", "shard", "/no/such/dir", "--out", "x"], "source folder not found"),
    (["data", "synth", "--kind", "shapes", "--num", "1", "--size", "33x32", "--out", "x"], "must be even"),
])
def test_errors_name_the_problem(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["data", "synth", "--help"])
    text = capsys.readouterr().out
    assert "driving" in text and "heldout" in text and "examples:" in text
    with pytest.raises(SystemExit):
        main(["data", "synth", "--kind", "shapes", "--num", "0", "--out", "x"])
    assert "must be positive" in capsys.readouterr().err


@pytest.mark.parametrize("option,value,message", [
    ("--start-index", "-3", "must be 0 or more"),  # was numpy's "expected non-negative integer", after mkdir
    ("--previews", "-1", "must be 0 or more"),  # was ignored
    ("--crf", "99", "must be 0..51"),  # was passed to libx264
])
def test_synth_numbers_out_of_range_are_usage_errors(option, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "synth", "--kind", "shapes", "--num", "1", option, value, "--out", str(tmp_path / "x")])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cache_latents_batch_size_is_positive(capsys):
    with pytest.raises(SystemExit):  # was range()'s "arg 3 must not be zero", after loading the autoencoder
        main(["cache-latents", "configs/shapes/image.yaml", "--batch-size", "0"])
    assert "argument --batch-size: must be positive" in capsys.readouterr().err
