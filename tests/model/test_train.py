import json

import pytest
import torch

from model.train import augment, cutout, lr_at, train
from tests.model.conftest import tiny_config


def test_tiny_training_run_lowers_the_loss(tiny_run):
    run_dir, last = tiny_run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert last["val_acc"] > 0.6  # three colour classes: chance is 0.33
    assert (run_dir / "checkpoint.pt").exists()
    assert (run_dir / "training_curve.png").stat().st_size > 0


def test_resume_continues_exactly_where_it_stopped(tmp_path, synthetic_zip):
    def config(run_dir):
        return tiny_config(synthetic_zip, run_dir)

    straight = train(config(tmp_path / "straight"))
    first = train(config(tmp_path / "split"), stop_after=1)
    assert first["epoch"] == 1
    with pytest.raises(SystemExit, match="no checkpoint"):
        train(config(tmp_path / "nowhere"), resume=True)
    resumed = train(config(tmp_path / "split"), resume=True)
    assert resumed["epoch"] == 2
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    for key in ("train_loss", "val_loss", "val_acc"):
        assert resumed[key] == pytest.approx(straight[key], rel=1e-4)


def test_resume_forgets_log_lines_the_checkpoint_does_not_hold(tmp_path, synthetic_zip):
    run_dir = tmp_path / "run"
    train(tiny_config(synthetic_zip, run_dir), stop_after=1)
    metrics = run_dir / "metrics.jsonl"
    # Stopped after epoch 2 was logged but before its checkpoint was written.
    metrics.write_text(metrics.read_text() + json.dumps({"epoch": 2, "val_acc": 0.0}) + "\n")
    train(tiny_config(synthetic_zip, run_dir), resume=True)
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[-1]["val_acc"] > 0.0


def test_augment_keeps_shape_dtype_and_content():
    batch = torch.arange(4 * 8 * 8 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(4, 8, 8, 3)
    out = augment(batch, torch.Generator().manual_seed(0), pad=2)
    assert out.shape == batch.shape and out.dtype == torch.uint8
    # A crop-and-flip only moves pixels: every output pixel exists in the (reflect-padded) input.
    assert set(out.flatten().tolist()) <= set(batch.flatten().tolist())


def test_cutout_blanks_one_clipped_square_per_image():
    x = torch.ones(64, 3, 32, 32)
    out = cutout(x, 8, torch.Generator().manual_seed(0))
    blank = out[:, 0] == 0  # [N, H, W]
    assert torch.equal(blank[:, None].expand_as(out), out == 0)  # every channel alike
    areas = blank.sum(dim=(1, 2))
    assert areas.max() == 64 and areas.min() >= 16  # whole 8x8, or clipped at a corner to >= 4x4
    for mask in blank:  # one axis-aligned rectangle: its rows and columns span exactly its area
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        assert len(rows) * len(cols) == mask.sum()
        assert rows.max() - rows.min() + 1 == len(rows) and cols.max() - cols.min() + 1 == len(cols)
    assert torch.equal(out, cutout(x, 8, torch.Generator().manual_seed(0)))  # seeded: resumable


def test_learning_rate_warms_up_then_decays_to_zero():
    peak, total, warm = 0.1, 100, 10
    values = [lr_at(s, total, warm, peak) for s in range(total)]
    assert values[0] < values[9] == pytest.approx(peak)
    assert all(a >= b for a, b in zip(values[9:], values[10:], strict=False))
    assert values[-1] < 0.02


def test_warm_restart_builds_on_a_finished_run(tiny_run, tmp_path, synthetic_zip):
    run_dir, finished = tiny_run
    config = tiny_config(synthetic_zip, tmp_path, epochs=1, lr=0.01, init_from=str(run_dir / "checkpoint.pt"))
    restarted = train(config)
    assert restarted["epoch"] == finished["epoch"] + 1  # epochs count on from the earlier cycle
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # Trained weights, not a fresh init: the first restarted epoch fits better than the first epoch.
    assert restarted["train_loss"] < rows[0]["train_loss"]
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["prior_epochs"] == finished["epoch"] and state["epoch"] == 1


def test_max_images_below_the_validation_split_is_a_clear_error(tmp_path, synthetic_zip, capsys):
    from app.cli.main import main as cli_main

    args = ["train", "--data", str(synthetic_zip), "--run-dir", str(tmp_path), "--max-images", "20"]
    assert cli_main([*args, "--val-size", "30", "--epochs", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "ninserve train: --val-size 30 holds out all 20 training images (--max-images 20): "
        "give --val-size below 20 (one per class at least) or more images"
    )
    assert not (tmp_path / "checkpoint.pt").exists()
