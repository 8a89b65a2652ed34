"""Training data that means what it says: label cleaning by karyotype, synthetic cluster kinds,
mined singles, the ignore label in loss and metrics, and the bf16 switch."""

from dataclasses import replace

import cv2
import numpy as np
import pytest
import tifffile
import torch

from pipeline.core import adir, device
from segmenter import dataset, evaluate, metrics, mining, synthetic
from segmenter.config import SyntheticOptions
from segmenter.model import build_model
from segmenter.targets import IGNORE, OVERLAP
from segmenter.train import pair_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(
    "text, complete, missing, rearranged",
    [
        ("46,XY", True, False, False),
        ("46, XX", True, False, False),
        ("45,XY,-2", False, True, False),
        ("44,X,-6", False, True, False),
        ("46,XX,t(4;9)YUTUYTUY", False, False, True),
        ("47,XX,+r(9)acare Hermann Cytogenetics", False, False, True),
        ("45,X,-5,-14,+18,Ins(11;8),t(5;16)", False, True, True),
        (None, False, False, False),
    ],
)
def test_karyotype_says_what_k_can_be_trusted_with(text, complete, missing, rearranged):
    karyotype = adir.Karyotype(text)
    assert (karyotype.complete, karyotype.missing, karyotype.rearranged) == (
        complete,
        missing,
        rearranged,
    )


def _metaphase_with_unlabelled_chromosome() -> tuple[np.ndarray, np.ndarray]:
    """A 120x160 DAPI-like image: a labelled crossing pair (classes 1, 2), a bright bar that K
    leaves at 0 (rows 80-86, cols 20-60), a large nucleus (unlabelled, legitimately) and a
    speck."""
    labels = np.zeros((120, 160), np.uint8)
    labels[20:26, 10:50] = 1
    labels[6:44, 26:32] = 2
    labels[20:26, 26:32] = 255
    image = np.full(labels.shape, 15.0)
    image[labels > 0] = 150
    image[80:86, 20:60] = 150  # a chromosome K forgot
    rows, cols = np.mgrid[:120, :160]
    image[(rows - 70) ** 2 + (cols - 125) ** 2 < 30**2] = 140  # nucleus, ~2800 px
    image[110:113, 150:153] = 160  # speck, 9 px
    return image.astype(np.uint8), labels


def test_a_large_cluster_is_cut_into_windows_as_the_pipeline_cuts_it():
    """A cluster 150 px wide (two bars crossing a long one): one squashed crop by default, with
    ``max_window`` several windows of at most that side, each counting the chromosomes reaching
    into it, their targets cut from the cluster's target at full resolution."""
    labels = np.zeros((100, 200), np.uint8)
    labels[45:55, 20:170] = 1
    labels[10:90, 30:40] = 2
    labels[10:90, 150:160] = 2
    labels[45:55, 30:40] = labels[45:55, 150:160] = 255
    normalised = np.where(labels > 0, 0.8, 0.05).astype(np.float32)
    whole, _ = dataset.image_crops(normalised, labels, 4)
    assert len(whole.counts) == 1 and whole.counts[0] == 3
    windows, _ = dataset.image_crops(normalised, labels, 4, max_window=88)
    assert windows.counts.tolist() == [2, 1, 2]  # the long bar, with a crossing bar at each end
    assert [(target == OVERLAP).any() for target in windows.targets] == [True, False, True]


def test_unlabelled_bright_piece_is_found_and_ignored_in_crops_and_loss():
    image, labels = _metaphase_with_unlabelled_chromosome()
    normalised = np.clip(image / 160.0, 0, 1).astype(np.float32)
    pieces = adir.unlabelled_pieces(normalised, labels)
    assert pieces[80:86, 20:60].all()  # the forgotten chromosome, whole
    assert not pieces[labels > 0].any()  # never a labelled pixel
    assert not pieces[70, 125] and not pieces[111, 151]  # nucleus and speck stay background

    # the crossing pair's crop, with a margin reaching the forgotten chromosome
    crops, left_out = dataset.image_crops(normalised, labels, 40, pieces)
    assert left_out == 0 and len(crops.counts) == 1
    target = crops.targets[0]
    assert (target == IGNORE).any() and (target == OVERLAP).any()

    # ignored pixels count in neither loss nor metrics
    logits = torch.randn(1, 4, 88, 88)
    plain = torch.from_numpy(target.astype(np.int64))[None]
    changed = logits.clone()
    changed[:, :, torch.from_numpy(target == IGNORE)] = 9.0
    assert float(pair_loss(logits, plain, 1.0)) == pytest.approx(
        float(pair_loss(changed, plain, 1.0))
    )
    perfect = np.where(target == IGNORE, 1, target)[None]
    scores = metrics.evaluate_labels(perfect, target[None])["as_labelled"]["iou"]
    assert scores["background"] == 1.0 and scores["overlap"] == 1.0


def _write_metaphase(folder, name: str, image, labels, case_info: str | None):
    folder.mkdir(parents=True)
    tifffile.imwrite(folder / f"{name}D.tif", image)
    tifffile.imwrite(folder / f"{name}K.tif", labels)
    if case_info is not None:
        (folder / adir.CASE_INFO).write_text(case_info)


def test_karyotype_decides_cleaning(tmp_path):
    image, labels = _metaphase_with_unlabelled_chromosome()
    _write_metaphase(tmp_path / "Q01__XY", "Q0101XY", image, labels, "46,XY")
    _write_metaphase(tmp_path / "Q02__02", "Q020102", image, labels, "45,XY,-2")
    trusted, missing = (
        dataset.prepare(adir.find_images(tmp_path / name), 4, 40) for name in ("Q01__XY", "Q02__02")
    )
    assert trusted.cleaning["unlabelled_pieces"] == 0 and trusted.crops.complete.all()
    assert missing.cleaning["unlabelled_pieces"] == 1 and not missing.crops.complete.any()


def test_preparing_in_process_leaves_opencv_threads_alone(tmp_path):
    # the pipeline's width measure follows OpenCV's thread count in its last bits; preparing
    # training data in the calling process must not change it for what runs after
    image, labels = _metaphase_with_unlabelled_chromosome()
    _write_metaphase(tmp_path / "Q01__XY", "Q0101XY", image, labels, "46,XY")
    threads = cv2.getNumThreads()
    dataset.prepare(adir.find_images(tmp_path / "Q01__XY"), 4, 40, workers=1)
    assert cv2.getNumThreads() == threads


def test_end_to_end_classes_of_a_translocation_metaphase_are_left_out(tmp_path):
    labels = np.zeros((60, 80), np.uint8)
    labels[20:26, 10:30] = 4  # one chromosome, two classes meeting end to end: t(4;9)
    labels[20:26, 30:50] = 9
    labels[40:46, 10:40] = 7  # a lone chromosome
    image = np.where(labels > 0, 150, 15).astype(np.uint8)
    _write_metaphase(tmp_path / "T01__XY", "T0101XY", image, labels, "46,XY")
    _write_metaphase(tmp_path / "T02__52", "T020152", image, labels, "46,XX,t(4;9)")
    normal, translocation = (
        dataset.prepare(adir.find_images(tmp_path / name), 4, 40) for name in ("T01__XY", "T02__52")
    )
    assert sorted(normal.crops.counts) == [1, 2]
    assert list(translocation.crops.counts) == [1]
    assert translocation.cleaning["end_to_end_clusters_left_out"] == 1


def _bar_single(length: int, seed: int) -> synthetic.Single:
    """A bright bar with some texture in a dark 80x80 window."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((80, 80), bool)
    mask[37:43, 40 - length // 2 : 40 + length // 2] = True
    window = np.where(mask, 0.7, 0.05) + rng.normal(0, 0.02, mask.shape)
    nothing = np.zeros_like(mask)
    return synthetic.Single(window.astype(np.float32), mask, nothing, nothing, 0.05)


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_synthetic_kinds_have_the_truth_they_claim(kind):
    singles = [_bar_single(30 + 2 * i, i) for i in range(6)]
    images, targets = synthetic.make_clusters(
        singles,
        np.asarray([1.2], np.float32),
        6,
        0,
        4,
        SyntheticOptions(band_fraction=0.0),
        kinds=(kind,),
    )
    for image, target in zip(images, targets, strict=True):
        chromosomes = metrics.crop_instances(target)
        assert len(chromosomes) == 2
        overlap = (target == OVERLAP).any()
        grown = (
            torch.nn.functional.max_pool2d(
                torch.from_numpy(chromosomes[0].astype(np.float32))[None, None], 3, 1, 1
            )[0, 0]
            .numpy()
            .astype(bool)
        )
        touching = (grown & chromosomes[1]).any()
        if kind == "cross":
            assert overlap
        else:
            assert not overlap
            assert touching == (kind != "parallel")
        assert image[target > 0].mean() > image[target == 0].mean()


def test_clusters_of_three_to_five_and_banded_singles():
    singles = [_bar_single(30 + 2 * i, i) for i in range(6)]
    images, targets = synthetic.make_clusters(
        singles,
        np.asarray([1.2], np.float32),
        8,
        1,
        4,
        SyntheticOptions(cluster_sizes={4: 1}, kinds={"cross": 1, "touch": 1}, band_fraction=1.0),
    )
    for target in targets:
        # four chromosomes; a chromosome crossed twice may read as more pieces
        assert len(metrics.crop_instances(target)) >= 2
        assert (target > 0).sum() > 0
    lone = synthetic.banded(singles[0].window, singles[0].mask, 0.05, np.random.default_rng(0), 0.8)
    values = lone[singles[0].mask]
    assert values.min() < 0.5 * values.max()  # dark bands across the bar
    window = singles[0].window
    plain = window[singles[0].mask] - 0.05  # intensity above the background, unbanded
    for bright, darker, brighter in [(0.0, True, False), (1.0, False, True), (0.5, True, True)]:
        rng = np.random.default_rng(1)
        lone = synthetic.banded(window, singles[0].mask, 0.05, rng, 0.8, (1.5, 4.0), bright)
        above = lone[singles[0].mask] - 0.05
        assert ((above < 0.7 * plain).any(), (above > 1.3 * plain).any()) == (darker, brighter)


def test_bent_chromosomes_stay_one_chromosome():
    singles = [_bar_single(40 + 2 * i, i) for i in range(4)]
    bar = singles[0]
    rng = np.random.default_rng(0)
    straight = synthetic.Cutout(bar.window * bar.mask, bar.mask.astype(np.float32), 0.0)
    turned = synthetic.bent(straight, rng, (1.5, 1.5))  # about 86 degrees
    mask = turned.alpha > 0.5
    assert cv2.connectedComponents(mask.astype(np.uint8))[0] == 2  # one piece and background
    assert abs(mask.sum() - bar.mask.sum()) < 0.2 * bar.mask.sum()
    rows, cols = np.nonzero(mask)
    assert max(np.ptp(rows), np.ptp(cols)) < 0.85 * 40  # no longer a straight 40 px bar
    options = SyntheticOptions(band_fraction=0.0, bend_share=1.0, cluster_sizes={1: 1})
    images, targets = synthetic.make_clusters(
        singles, np.asarray([1.2], np.float32), 6, 0, 4, options
    )
    for image, target in zip(images, targets, strict=True):
        assert len(metrics.crop_instances(target)) == 1
        assert set(np.unique(target)) == {0, 1}  # one chromosome, no overlap where it bends
        assert image[target > 0].mean() > image[target == 0].mean() + 0.3
    straight_options = replace(options, bend_share=0.0)
    plain, _ = synthetic.make_clusters(
        singles, np.asarray([1.2], np.float32), 6, 0, 4, straight_options
    )
    assert not np.allclose(plain, images)


@pytest.mark.parametrize("exact_edges", [True, False])
def test_exact_edges_leave_no_halo_outside_the_truth(exact_edges):
    single = _bar_single(30, 0)
    rim = cv2.dilate(single.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    window = np.where(rim & ~single.mask, 0.4, single.window).astype(np.float32)  # blurred edge
    options = SyntheticOptions(band_fraction=0.0, exact_edges=exact_edges, edge_blur=(0.0, 0.0))
    image, target = synthetic.make_cluster(
        [replace(single, window=window)], 1.2, np.random.default_rng(0), 4, [], options
    )
    chromosome = (target > 0).astype(np.uint8)
    grown = [cv2.dilate(chromosome, np.ones((size, size), np.uint8)) for size in (5, 9)]
    near = grown[1] > grown[0]
    halo = image[near].mean()  # 1-2 source pixels outside the truth
    assert (halo < 0.15) if exact_edges else (halo > 0.3)
    assert image[target > 0].mean() > 0.6


def test_mined_singles_only_the_isolated_blob(tmp_path):
    image = np.full((100, 160), 0.05, np.float32)
    image[20:26, 20:60] = 0.8  # isolated, elongated
    image[60:66, 80:120] = 0.8  # two touching in an L: not one chromosome
    image[60:100, 114:120] = 0.8
    masks = mining.mine_singles(image)
    assert len(masks) == 1 and masks[0][22, 40] and masks[0].sum() == 6 * 40

    tifffile.imwrite(tmp_path / "spread.tif", (image * 255).astype(np.uint8))
    assert mining.write_mined(tmp_path / "spread.tif", "spread", tmp_path / "mined") == 1
    (found,) = adir.find_images(tmp_path / "mined")
    assert not adir.read_karyotype(found).complete  # other chromosomes are not labelled
    prepared = dataset.prepare([found], 4, 40)
    assert len(prepared.singles) == 1


def test_separation_counts_chromosomes_returned_apart():
    target = np.zeros((1, 40, 40), np.uint8)
    target[0, 18:22, 4:36] = 1
    target[0, 4:36, 18:22] = 2
    target[0, 18:22, 18:22] = OVERLAP
    merged = np.where(target > 0, 1, 0).astype(np.uint8)
    assert metrics.separation(target, target)[0]["separated"] == 1.0
    assert metrics.separation(merged, target)[0]["separated"] == 0.0
    picture = evaluate.montage(
        np.zeros((3, 40, 40), np.float32), target.repeat(3, 0), merged.repeat(3, 0), 2
    )
    assert picture.shape == (2 * 42, 2 * (3 * 40 + 4 + 6), 3)


def test_crossing_separation_reported_by_angle():
    upright = np.zeros((40, 40), np.uint8)  # a plus: 90 degrees
    upright[18:22, 4:36] = 1
    upright[4:36, 18:22] = 2
    upright[18:22, 18:22] = OVERLAP
    along = np.zeros((40, 40), np.uint8)  # two bars along each other: 0 degrees
    along[10:14, 4:30] = 1
    along[12:16, 10:36] = 2
    along[12:14, 10:30] = OVERLAP
    targets = np.stack([upright, along])
    assert np.allclose(evaluate.crossing_angles(targets), [90, 0], atol=5)
    merged = np.where(targets > 0, 1, 0).astype(np.uint8)
    predicted = np.stack([upright, merged[1]])  # the plus parted, the two bars not
    # the plus drawn as fluorescence adds (overlap twice a bar's signal), the bars as one
    images = np.where(targets > 0, 0.5, 0.1).astype(np.float32)
    images[0][targets[0] == OVERLAP] = 0.9
    result = evaluate.score(
        {"synthetic_crossing": (images, targets)}, {"synthetic_crossing": predicted}
    )
    assert np.allclose(evaluate.overlap_contrasts(images, targets), [2.0, 1.0])
    contrasts = result["synthetic_crossing"]["separated_by_contrast"]
    assert contrasts["2.0-inf"] == {"crops": 1, "separated": 1.0}
    assert contrasts["0-1.25"] == {"crops": 1, "separated": 0.0}
    assert "overlap contrast 0-1.25 (1): separated 0.0000" in evaluate.format_table(result)
    bands = result["synthetic_crossing"]["separated_by_angle"]
    assert bands["45-90"] == {"crops": 1, "separated": 1.0}
    assert bands["0-15"] == {"crops": 1, "separated": 0.0}
    assert bands["15-30"]["crops"] == 0
    assert "crossing at 0-15 degrees (1): separated 0.0000" in evaluate.format_table(result)
    # the bars: 26x4 each, 40 overlap pixels; the plus: 32x4 each
    assert np.allclose(evaluate.size_ratios(targets), [1.0, 1.0])
    sizes = result["synthetic_crossing"]["separated_by_size"]
    assert sizes["0.6-1"] == {"crops": 2, "separated": 0.5}
    assert sizes["0-0.3"]["crops"] == 0
    # a set with a crop that holds no overlap (touching) gets no crossing breakdown
    touching = np.where(targets == OVERLAP, 1, targets).astype(np.uint8)
    mixed = np.stack([targets[0], touching[1]])
    result = evaluate.score({"pairs": (images, mixed)}, {"pairs": mixed})
    assert "separated_by_angle" not in result["pairs"]


def test_size_ratio_of_a_small_chromosome_over_a_large_one():
    target = np.zeros((40, 40), np.uint8)
    target[10:14, 2:38] = 1  # 36 x 4 = 144 pixels
    target[6:18, 20:24] = 2  # 12 x 4 = 48 pixels, 16 of them over A
    target[10:14, 20:24] = OVERLAP
    assert np.isclose(evaluate.size_ratios(target[None])[0], 48 / 144)


def test_bf16_switch(monkeypatch):
    cpu = torch.device("cpu")
    assert device.use_bf16(False, cpu) is False and device.use_bf16(True, cpu) is True
    monkeypatch.setattr(device, "bf16_available", lambda _: False)
    assert device.use_bf16("auto", cpu) is False  # unsupported: fp32
    monkeypatch.setattr(device, "bf16_available", lambda _: True)
    assert device.use_bf16("auto", cpu) is True
    torch.manual_seed(0)
    net = build_model({"channels": [8, 16], "norm": "batch", "skip": "add"}).eval()
    x = torch.rand(2, 1, 88, 88).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        full = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = net(x)
    assert half.shape == full.shape
    assert torch.allclose(half.float().softmax(1), full.softmax(1), atol=0.05)
