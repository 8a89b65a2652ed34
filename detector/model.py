"""The detector network: torchvision Faster R-CNN with two classes (background, cluster).

``build_model(model_config)`` is the one factory. Backbones (``model_config.backbone``):

- ``small`` (default): a few conv-bn-relu blocks, stride 8, one feature map with ``out_channels``
  channels; the last two blocks are dilated so that the receptive field covers large clusters.
  Trains from scratch on a CPU.
- ``mobilenet_v3_large_fpn`` and ``resnet50_fpn``: torchvision's stock backbones with an FPN,
  built with ``weights=None, weights_backbone=None`` (no download), for users with GPUs.

Every backbone takes one grey channel: the stock ones get it replicated to three.

Input: a list of ``(1, H, W)`` float32 tensors in [0, 1] (``pipeline.imageio.normalise``, so
chromosomes are bright). Unlike torchvision's default, images are NOT resized: the detector works
at the pixel scale it was trained at (``input_scale`` in the config rescales before the network;
see ``detector.api``). Output boxes are x0, y0, x1, y1 in input pixels.
"""

from __future__ import annotations

import torch
from torch import nn

from detector.config import ModelSettings
from pipeline.core import config as core_config
from pipeline.core.imports import torchvision_without_dynamo
from pipeline.core.inference import inference_form

with torchvision_without_dynamo():
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.transform import GeneralizedRCNNTransform
    from torchvision.ops import MultiScaleRoIAlign

BACKBONES = ("small", "mobilenet_v3_large_fpn", "resnet50_fpn")


def conv_bn_relu(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SmallBackbone(nn.Sequential):
    """Grey ``(B, 1, H, W)`` -> features ``(B, out_channels, H/8, W/8)``.

    ``widths``: channels after each of the three stride-2 stages; ``out_channels``: channels of the
    two dilated (2, 4) blocks at stride 8 that end it.
    """

    def __init__(self, widths: list[int], out_channels: int):
        layers, cin = [], 1
        for stage, width in enumerate(widths):
            layers.append(conv_bn_relu(cin, width, stride=2))
            if stage > 0:
                layers.append(conv_bn_relu(width, width))
            cin = width
        layers += [
            conv_bn_relu(cin, out_channels, dilation=2),
            conv_bn_relu(out_channels, out_channels, dilation=4),
        ]
        super().__init__(*layers)
        self.out_channels = out_channels


class GreyToRGB(nn.Module):
    """Feeds a one-channel image to a three-channel backbone (the channel repeated)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.body = backbone
        self.out_channels = backbone.out_channels

    def forward(self, images: torch.Tensor):
        return self.body(images.expand(-1, 3, -1, -1))


class NativeSizeTransform(GeneralizedRCNNTransform):
    """torchvision's batching and normalisation, without its resize to ``min_size``."""

    def resize(self, image, target=None):
        return image, target


class Bf16Backbone(nn.Module):
    """Inference form of a backbone in bf16 (``pipeline.core.inference.inference_form``: norms
    folded, conv + ReLU fused, channels-last) that hands float32 features on: the convolutions
    are where the time goes, while the heads decode boxes and run NMS in float32 (bf16 keeps 8
    bits: about 2 px at 500 px)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.body = inference_form(backbone, bf16=True)
        self.out_channels = backbone.out_channels

    def forward(self, images: torch.Tensor):
        images = images.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        features = self.body(images)
        if isinstance(features, torch.Tensor):
            return features.float().contiguous()
        return type(features)((name, value.float()) for name, value in features.items())


def _stock_backbone(name: str) -> nn.Module:
    from torchvision.models.detection import (
        fasterrcnn_mobilenet_v3_large_fpn,
        fasterrcnn_resnet50_fpn,
    )

    factory = {
        "mobilenet_v3_large_fpn": fasterrcnn_mobilenet_v3_large_fpn,
        "resnet50_fpn": fasterrcnn_resnet50_fpn,
    }[name]
    return GreyToRGB(factory(weights=None, weights_backbone=None, num_classes=2).backbone)


def build_model(config: ModelSettings | dict) -> FasterRCNN:
    """Faster R-CNN for two classes from the ``model`` section of a detector config (or its
    mapping)."""
    if not isinstance(config, ModelSettings):
        config = core_config.parse(ModelSettings, config, "model.")
    name = config.backbone
    if name not in BACKBONES:
        raise ValueError(f"unknown detector backbone {name!r}; choose one of {BACKBONES}")
    if name == "small":
        backbone = SmallBackbone(config.widths, config.out_channels)
        feature_maps = 1
    else:
        backbone = _stock_backbone(name)
        feature_maps = 3 if name == "mobilenet_v3_large_fpn" else 5
    # small: one feature map carries every size; mobilenet (3 coarse levels): every size on each
    # level, as torchvision does; resnet50 FPN (5 levels, strides 4..64): one size per level
    sizes = tuple(config.anchor_sizes)
    if feature_maps == 5:
        anchor_sizes = tuple((sizes[min(i, len(sizes) - 1)],) for i in range(5))
    else:
        anchor_sizes = (sizes,) * feature_maps
    ratios = tuple(config.aspect_ratios)
    anchors = AnchorGenerator(anchor_sizes, (ratios,) * feature_maps)
    pool_names = ["0"] if name == "small" else ["0", "1", "2", "3"]  # absent names are skipped
    roi_pool = MultiScaleRoIAlign(
        pool_names, output_size=7, sampling_ratio=config.roi_sampling_ratio
    )
    representation = config.representation_size
    model = FasterRCNN(
        backbone,
        num_classes=None,
        rpn_anchor_generator=anchors,
        box_roi_pool=roi_pool,
        box_head=TwoMLPHead(backbone.out_channels * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, 2),
        rpn_pre_nms_top_n_train=config.rpn_pre_nms_top_n_train,
        rpn_post_nms_top_n_train=config.rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n_test,
        box_score_thresh=config.box_score_thresh,
        box_nms_thresh=config.box_nms_thresh,
        box_detections_per_img=config.box_detections_per_img,
    )
    model.transform = NativeSizeTransform(
        min_size=1, max_size=1, image_mean=config.image_mean, image_std=config.image_std
    )
    return model
