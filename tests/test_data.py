"""ocrkit.data: LMDB / folder datasets and the resize-pad policy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import read_labels
from ocrkit.data import FolderDataset, LmdbDataset, ResizePad, open_dataset


def test_lmdb_dataset_multi_lmdb_multirow(cli, tmp_path, multirow_set):
    for name in ("x", "y"):
        assert cli("build-lmdb", multirow_set, tmp_path / "dbs" / name, "-q").exit_code == 0
    ds = open_dataset(str(tmp_path / "dbs"))
    assert isinstance(ds, LmdbDataset) and len(ds) == 24
    labels = read_labels(multirow_set)
    sample = ds[12 + 3]
    assert sample.rows == labels[3]["rows"] and sample.image.mode == "L"
    assert sample.image.size == (224, 224)
    with pytest.raises(IndexError):
        ds[24]


def test_folder_dataset_reports_broken_images(tmp_path, multirow_set):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(multirow_set, data)
    victim = read_labels(data)[0]["image"]
    (data / victim).write_bytes(b"\x89PNG broken")
    ds = FolderDataset(str(data))
    assert ds[0].image is None and ds[0].error == "not an image (unknown or unsupported format)"
    assert ds[1].image is not None
    strict = FolderDataset(str(data), skip_broken=False)
    from ocrkit.errors import OcrkitError

    with pytest.raises(OcrkitError, match="00000000.png: not an image"):
        strict[0]


def test_resize_pad_policies():
    im = Image.new("L", (100, 20), 200)
    im.paste(0, (0, 0, 10, 20))
    arr, valid = ResizePad(32, 320, "keep-ratio")(im)
    assert arr.shape == (1, 32, 320) and arr.dtype == np.float32 and valid == 160
    assert arr[0, :, 200:].min() == pytest.approx(200 / 255)  # padded with the background
    arr, valid = ResizePad(32, 100, "keep-ratio")(im)
    assert valid == 100  # too long: squeezed to the width
    arr, valid = ResizePad(64, 128, "stretch")(im)
    assert arr.shape == (1, 64, 128) and valid == 128
    arr, valid = ResizePad(224, 224, "fit")(Image.new("L", (448, 224), 255))
    assert arr.shape == (1, 224, 224) and valid == 224
    with pytest.raises(ValueError):
        ResizePad(32, 32, "crop")
