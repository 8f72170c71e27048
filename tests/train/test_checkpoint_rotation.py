"""save_total_limit rotates by step number, after the keep_epochs policy, whatever the folders' mtimes say."""

import json
import os

from lima_align.train.checkpoint import MARKER, CheckpointPolicy, complete_checkpoints, prune
from lima_align.train.config import TrainConfig
from lima_align.train.trainer import training_arguments


def _checkpoint(out, step, epoch):
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w")
    (folder / "optimizer.pt").write_bytes(b"o")
    (folder / MARKER).write_text(json.dumps({"global_step": step, "epoch": epoch, "resumable": True}))
    return folder


def test_the_limit_keeps_the_newest_steps_even_when_an_older_folder_was_touched_last(tmp_path):
    folders = [_checkpoint(tmp_path, step, float(step)) for step in (1, 2, 3, 4)]
    # stripping checkpoint-2 after checkpoint-3 was written made it the newest by mtime (what fooled the Trainer)
    for i, folder in enumerate(folders):
        os.utime(folder, (1000 + 10 * i, 1000 + 10 * i))
    os.utime(folders[1], (5000, 5000))

    done = prune(tmp_path, folders[-1], CheckpointPolicy(window=(1, 10), limit=2))
    assert [c.name for c in complete_checkpoints(tmp_path)] == ["checkpoint-3", "checkpoint-4"]
    assert done == ["checkpoint-1: deleted", "checkpoint-2: deleted", "checkpoint-3: weights kept, optimizer state deleted"]
    assert not (tmp_path / "checkpoint-2").exists()


def test_the_limit_applies_after_the_window_and_only_strips_what_it_keeps(tmp_path):
    folders = [_checkpoint(tmp_path, step, float(step)) for step in range(1, 7)]
    done = prune(tmp_path, folders[-1], CheckpointPolicy(window=(2, 10), limit=3))
    assert [c.name for c in complete_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-5", "checkpoint-6"]
    assert "checkpoint-1: deleted" in done and "checkpoint-3: deleted" in done  # 3 is in the window: over the limit
    for step in (4, 5):
        marker = json.loads((tmp_path / f"checkpoint-{step}" / MARKER).read_text())
        assert marker["resumable"] is False and not (tmp_path / f"checkpoint-{step}" / "optimizer.pt").exists()
    assert (tmp_path / "checkpoint-6" / "optimizer.pt").is_file()  # the newest stays resumable


def test_no_limit_keeps_the_window_and_the_disk_plan_counts_the_limit(tmp_path):
    folders = [_checkpoint(tmp_path, step, float(step)) for step in range(1, 5)]
    prune(tmp_path, folders[-1], CheckpointPolicy(window=(2, 3)))
    assert [c.name for c in complete_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert CheckpointPolicy((5, 10)).kept_count(15) == 7
    assert CheckpointPolicy((5, 10), limit=2).kept_count(15) == 2
    assert CheckpointPolicy((5, 10), limit=0).kept_count(15) == 7


def test_the_trainer_does_not_rotate_by_mtime_itself(tmp_path):
    config = TrainConfig(model="m", data="d.jsonl", out=str(tmp_path), save_total_limit=1)
    assert training_arguments(config).save_total_limit is None
