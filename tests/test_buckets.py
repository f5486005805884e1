"""--bucket-widths: batches of images of similar width (the sampler, the image sizes it
reads, and the training command)."""

from __future__ import annotations

import json
import statistics

import pytest
from PIL import Image

from ocrkit.train.sampler import DomainBalancedSampler, StepSampler, dataset_aspects


def _widest(order, aspects, size):
    """Mean over batches of the batch's widest aspect (what a batch pads to)."""
    return statistics.mean(max(aspects[i] for i in order[k:k + size])
                           for k in range(0, len(order), size))


def test_bucketed_batches_are_narrower_and_keep_the_epochs_samples():
    aspects = [1 + (7 * i) % 23 / 4 for i in range(256)]  # 1 ... 6.5, spread over the data
    plain, bucketed = StepSampler(256, 8, seed=3), StepSampler(256, 8, seed=3)
    bucketed.bucket_by(aspects, 8)
    a, b = list(plain), list(bucketed)
    assert sorted(a) == sorted(b) == list(range(256))  # the same samples, once each
    assert _widest(b, aspects, 8) < 0.7 * _widest(a, aspects, 8)
    for k in range(0, 256, 64):  # each run of 8 batches holds the plain order's samples
        assert sorted(a[k:k + 64]) == sorted(b[k:k + 64])
    for k in range(0, 256, 8):  # a batch is a slice of its run sorted by aspect
        batch = [aspects[i] for i in b[k:k + 8]]
        run = sorted(aspects[i] for i in a[k // 64 * 64:k // 64 * 64 + 64])
        assert any(run[j:j + 8] == sorted(batch) for j in range(0, 64, 8))
    # batches are shuffled within the run (not narrow-to-wide), and deterministic
    firsts = [aspects[b[k]] for k in range(0, 64, 8)]
    assert firsts != sorted(firsts)
    again = StepSampler(256, 8, seed=3)
    again.bucket_by(aspects, 8)
    assert list(again) == b
    again.set_position(0, 5)  # a resumed run continues the same order
    assert list(again) == b[40:]
    again.set_position(1, 0)
    assert list(again) != b


def test_bucketing_keeps_domain_balance_per_run_and_shards_by_rank():
    domains = ["scene"] * 40 + ["handwriting"] * 24
    aspects = [float(i % 9 + 1) for i in range(64)]
    sampler = DomainBalancedSampler(domains, 4, seed=0)
    plain = list(sampler)
    sampler.bucket_by(aspects, 4)
    order = list(sampler)
    for k in range(0, len(order), 16):
        assert sorted(order[k:k + 16]) == sorted(plain[k:k + 16])
        assert [domains[i] for i in order[k:k + 16]].count("scene") == 8
    ranks = []
    for r in (0, 1):
        s = StepSampler(64, 4, seed=0, rank=r, world=2)
        s.bucket_by(aspects, 2)
        ranks.append(list(s))
    assert not set(ranks[0]) & set(ranks[1]) and len(ranks[0]) == 32
    with pytest.raises(ValueError):
        StepSampler(64, 4).bucket_by(aspects[:10], 2)


def test_aspects_come_from_the_image_headers_of_folders_lmdbs_and_subsets(tmp_path):
    from data_tools.lmdb import write_lmdb
    from data_tools.labels import read_labels
    from ocrkit.data import open_dataset
    from ocrkit.train.run import LabelSubset

    folder = tmp_path / "words"
    (folder / "images").mkdir(parents=True)
    sizes = [(40, 20), (90, 30), (32, 32)]
    with open(folder / "labels.jsonl", "w", encoding="utf-8") as fh:
        for i, size in enumerate(sizes):
            Image.new("L", size, 255).save(folder / "images" / f"{i}.png")
            fh.write(json.dumps({"image": f"images/{i}.png", "rows": ["ab"]}) + "\n")
        (folder / "images" / "3.png").write_bytes(b"not an image")
        fh.write(json.dumps({"image": "images/3.png", "rows": ["ab"]}) + "\n")
    expected = [2.0, 3.0, 1.0, 0.0]  # an unreadable image: 0, left to the loader to report
    assert open_dataset(str(folder)).aspects() == expected
    write_lmdb(read_labels(str(folder)), str(tmp_path / "words.lmdb"), sources=[str(folder)])
    lmdb_set = open_dataset(str(tmp_path / "words.lmdb"))
    both = open_dataset([str(folder), str(tmp_path / "words.lmdb")])
    assert dataset_aspects(both) == expected + lmdb_set.aspects()
    assert lmdb_set.aspects()[:3] == expected[:3]
    assert dataset_aspects(LabelSubset(open_dataset(str(folder)), [2, 0])) == [1.0, 2.0]


TINY = ["--backbone-arg", "channels=(8,8,16,16)", "--sequence-arg", "hidden=16",
        "--sequence-arg", "layers=1", "--height", "32", "--width", "128", "-b", "8", "-w", "0",
        "--max-steps", "3", "--val-every", "3"]


def test_train_with_bucket_widths_from_the_cli(cli, tmp_path):
    data = tmp_path / "words"
    res = cli("synth", "--lang", "en", "--domain", "scene", "-n", 24, "--height", 32,
              "--width", 128, "--cols", 12, "--out", data, "-w", 1, "-q")
    assert res.exit_code == 0, res.stderr
    res = cli("train", "--train", data, "--val", data, "-o", tmp_path / "run", "--channels", 3,
              "--bucket-widths", 2, *TINY)
    assert res.exit_code == 0, res.stderr
    assert "--bucket-widths 2: batches of similar width (sizes of 24 training images" \
        in res.stderr
    assert json.loads((tmp_path / "run/config.json").read_text())["options"][
        "bucket_widths"] == 2
    res = cli("train", "--train", data, "-o", tmp_path / "fixed", "--resize", "stretch",
              "--bucket-widths", 2, *TINY)
    assert res.exit_code == 2
    assert "--bucket-widths: every batch of this input (stretch" in res.stderr
