"""chromoseg segmenter: the overlap U-Net that separates chromosomes on 88x88 cluster crops
(0 background, 1 chromosome A, 2 chromosome B, 3 overlap).

``from segmenter import load_model, segment`` (see ``segmenter.api``) imports torch only when
first used; the crop geometry shared with the pipeline is in ``segmenter.crops``.
"""

__all__ = ["load_model", "segment"]


def __getattr__(name: str):
    if name in __all__:
        from segmenter import api

        return getattr(api, name)
    raise AttributeError(f"module 'segmenter' has no attribute {name!r}")
