"""Reading what training never showed: lines of any width, augmented training that is
reproducible, more font designs from pip, more varied renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ocrkit.data.augment import Augment, AugmentedDataset
from ocrkit.data.batch import Collate, InputSpec


def line(width: int, height: int = 40) -> Image.Image:
    im = Image.new("L", (width, height), 230)
    arr = np.asarray(im).copy()
    arr[height // 3: 2 * height // 3, 4: width - 4: 6] = 20  # a dotted "text" stroke
    return Image.fromarray(arr)


def test_lines_keep_their_width_unless_fixed():
    spec = InputSpec(32, 128, "keep-ratio")
    long, short = line(800), line(80)
    arr, width = spec.transform("any")(long)
    assert arr.shape == (1, 32, 640) and width == 640  # its own aspect ratio: 800 * 32 / 40
    assert spec.transform("fixed")(long)[0].shape == (1, 32, 128)  # squashed, as before
    assert spec.transform("batch")(long)[0].shape == (1, 32, 128)  # training: at most W
    assert spec.transform("any")(short)[0].shape == (1, 32, 64)
    x = spec.to_tensor([spec.transform("any")(im)[0] for im in (long, short)])
    assert x.shape == (2, 1, 32, 640)  # a batch pads to its widest line ...
    paper = (230 / 255 - 0.5) / 0.5
    assert torch.allclose(x[1, 0, :, 64:], torch.full((32, 576), paper), atol=1e-6)  # ... with paper
    multi = InputSpec(96, 96, "stretch", rows=3)
    assert not multi.any_width and multi.transform("any")(long)[0].shape == (1, 96, 96)


def test_a_line_wider_than_the_any_width_limit_is_flagged_not_silently_squashed():
    from ocrkit.data.transforms import input_mismatch

    spec = InputSpec(32, 128, "keep-ratio")
    limit = spec.transform("any").max_width
    assert limit == 64 * 32
    too_long, ok = line(70 * 40), line(60 * 40)  # 70 and 60 heights wide
    assert spec.transform("any")(too_long)[0].shape == (1, 32, limit)  # squashed ...
    why = input_mismatch(too_long, 32, 128, 1, limit)
    assert why == "2800x40 line is wider than 64 times its height: squashed to 2048 px " \
                  "(split it into shorter lines)"  # ... and said so
    assert input_mismatch(ok, 32, 128, 1, limit) is None
    assert input_mismatch(too_long, 32, 128, 1) is None  # --fixed-width: squashing asked for


def test_predictor_reads_each_line_at_its_width_and_returns_input_order(tmp_path):
    from ocrkit.charset import Charset
    from ocrkit.checkpoint import save_checkpoint
    from ocrkit.models.recognizer import Recognizer, make_spec
    from ocrkit.predict import Predictor

    spec = make_spec("vgg-small", backbone_args={"channels": (4, 8, 8, 8)},
                     sequence_args={"hidden": 8, "layers": 1})
    model = Recognizer(spec, 4)
    save_checkpoint(str(tmp_path / "m.pt"), {
        "spec": model.spec, "charset": Charset(list("abc")).chars,
        "input": InputSpec(32, 128, "keep-ratio").__dict__, "state_dict": model.state_dict()})
    images = [line(w) for w in (900, 60, 300, 60)]
    seen = []
    predictor = Predictor(str(tmp_path / "m.pt"), "cpu")
    real = predictor.model.forward
    predictor.model.forward = lambda x, *a, **k: (seen.append(x.shape[-1]), real(x, *a, **k))[1]
    out = predictor(images, batch_size=2)
    assert len(out) == 4 and seen == [48, 720]  # batches of like widths, not 128 squashed
    assert [r[0] for r in out] == [r[0] for r in (predictor([im])[0] for im in images)]
    fixed = Predictor(str(tmp_path / "m.pt"), "cpu", fixed_width=True)
    assert fixed.resize(images[0])[0].shape[-1] == 128


def test_augmentation_is_text_safe_and_reproducible_per_seed_epoch_and_sample():
    im = line(240)
    aug = Augment()
    a = aug(im, np.random.default_rng([7, 0, 3]))
    b = aug(im, np.random.default_rng([7, 0, 3]))
    assert np.array_equal(np.asarray(a), np.asarray(b))
    outs = {np.asarray(aug(im, np.random.default_rng([7, e, 3]))).tobytes() for e in range(8)}
    assert len(outs) > 4  # another epoch, another augmentation
    for k in range(50):  # never loses the line: about the same height, never vertical
        out = aug(im, np.random.default_rng([1, 0, k]))
        assert out.mode == "L" and 0.7 < out.height / im.height < 1.4
        assert out.width / out.height > 2


def test_stroke_contrast_thickens_verticals_or_lightens_horizontals_only():
    from ocrkit.data.augment import _contrast

    a = np.full((20, 20), 230, np.uint8)
    a[5:15, 9] = 20   # a vertical stroke, 1 px wide
    a[2, 3:17] = 20   # a horizontal stroke, 1 px high
    wide = np.asarray(_contrast(Image.fromarray(a), horizontal=True))
    assert (wide[5:15, 8:11] == 20).all()            # the vertical stroke is 3 px wide
    assert (wide[1, 3:17] == 230).all() and (wide[3, 4:16] == 230).all()  # still 1 px high
    thin = np.asarray(_contrast(Image.fromarray(a), horizontal=False))
    assert (thin[2, 3:17] == 125).all()               # lighter, not gone
    assert (thin[6:14, 9] == 20).all() and (thin[6:14, 8] == 230).all()  # verticals kept
    light_on_dark = Image.fromarray(255 - a)
    assert np.array_equal(np.asarray(_contrast(light_on_dark, True)), 255 - a)


def test_margins_of_a_multi_row_image_scale_with_one_row():
    """A crop of 12 % of a 7-row image's height would cut a whole text row off: with
    rows=7 the margins move by at most 12 % of one row."""
    im = line(112, 112)
    only_margins = dict(p_width=0, p_affine=0, p_stroke=0, p_blur=0, p_levels=0, p_noise=0,
                        p_jpeg=0, p_invert=0, p_margin=1)
    multi, single = Augment(rows=7, **only_margins), Augment(**only_margins)
    worst = lambda aug: max(abs(aug(im, np.random.default_rng(k)).height - 112)  # noqa: E731
                            for k in range(40))
    assert worst(multi) <= 2 * round(0.12 * 112 / 7)
    assert worst(single) > 10


def test_augmented_loader_is_the_same_for_any_worker_count(tmp_path, cjk_font):
    from click.testing import CliRunner

    from ocrkit.cli import cli
    from ocrkit.data import open_dataset

    res = CliRunner().invoke(cli, ["synth", "-n", "16", "--cols", "4", "--font", cjk_font,
                                   "--out", str(tmp_path / "d"), "-w", "1", "-q"])
    assert res.exit_code == 0
    data = AugmentedDataset(open_dataset(str(tmp_path / "d")), Augment(), seed=5)
    data.set_epoch(2)
    collate = Collate(InputSpec(32, 128), None, width="batch")
    batches = []
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(data, batch_size=8, num_workers=workers,
                                             collate_fn=collate)
        batches.append([b["images"] for b in loader])
    assert all(torch.equal(a, b) for a, b in zip(*batches))
    data.set_epoch(3)
    other = [b["images"] for b in torch.utils.data.DataLoader(data, batch_size=8,
                                                              collate_fn=collate)]
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(batches[0], other))


def test_three_font_designs_come_with_pip():
    from data_tools.synth.fonts import pip_font_files

    designs = dict((d, p) for p, d in pip_font_files(designs=True))
    assert set(designs) == {"sans", "sans-wqy", "serif"}


def test_stroke_weight_and_paper_texture():
    from data_tools.synth.render import _grow, _paper

    cov = np.zeros((9, 9), np.uint8)
    cov[4, 4] = 255
    assert (_grow(cov, 1) == 255).sum() == 9 and _grow(_grow(cov, 1), -1)[4, 4] == 255
    assert (_grow(_grow(cov, 1), -1) == 255).sum() == 1
    # a fraction of a pixel blends part of the way: a 1 px stroke thinned by 0.5 stays
    stroke = np.zeros((9, 9), np.uint8)
    stroke[:, 4] = 255
    assert (_grow(stroke, -0.5)[:, 4] == 128).all() and (_grow(stroke, -1) == 0).all()
    assert (_grow(stroke, 0.5)[:, 3] == 128).all() and (_grow(stroke, 0.5)[:, 4] == 255).all()
    import random

    paper = _paper(random.Random(0), 220, 32, 200)
    assert paper.shape == (32, 200) and 180 < paper.mean() < 255 and paper.std() > 0.5


@pytest.mark.parametrize("setting", [["--weight", "1:1"], ["--texture", "1"]])
def test_synth_variety_options(cli, tmp_path, cjk_font, setting):
    out = tmp_path / "v"
    res = cli("synth", "-n", 4, "--cols", 4, "--font", cjk_font, "--out", out, "-w", 1, "-q",
              *setting)
    assert res.exit_code == 0, res.output
    plain = tmp_path / "p"
    cli("synth", "-n", 4, "--cols", 4, "--font", cjk_font, "--out", plain, "-w", 1, "-q",
        "--weight", "0:0", "--texture", "0")
    a = np.asarray(Image.open(next((out / "images/0000").glob("*.png"))))
    b = np.asarray(Image.open(next((plain / "images/0000").glob("*.png"))))
    if setting[0] == "--weight":
        assert (a < 128).sum() > 1.3 * (b < 128).sum()  # bolder: more ink
    else:
        assert not np.array_equal(a, b)


def test_a_short_scene_word_with_bits_of_its_neighbours_is_not_called_several_rows():
    """A 1-2 letter scene crop (aspect under 1.5) with the foot of the line above at its
    top edge is one row; two rows of text that each fill a good share are flagged."""
    import numpy as np
    from PIL import Image

    from ocrkit.data.transforms import input_mismatch

    word = np.full((32, 24), 220, np.uint8)
    word[0:3, 2:22] = 30  # the foot of a neighbouring line above
    word[9:27, 5:19] = 20  # the word
    assert input_mismatch(Image.fromarray(word), 32, 128, 1) is None
    two = np.full((40, 40), 220, np.uint8)
    two[4:16, 4:36] = 20
    two[23:35, 4:36] = 20
    assert "about 2 rows of text" in input_mismatch(Image.fromarray(two), 32, 128, 1)
