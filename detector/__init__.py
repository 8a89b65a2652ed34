"""chromoseg detector: boxes around chromosome clusters (a single chromosome, or a group that
touches or overlaps) in whole metaphase images, with torchvision Faster R-CNN.

Python API (``detector.api``; torch is imported there, not here)::

    from pipeline.core.imageio import read_image, normalise
    from detector.api import load_model, detect, detect_batch

    model = load_model()                      # shipped model (detector/pretrained); or a folder
    image = normalise(read_image("metaphase.tif"))   # (H, W) float32 in [0, 1], chromosomes bright
    boxes, scores = detect(model, image)      # float32 (N, 4) x0, y0, x1, y1 full-image pixel
                                              # edges, float32 (N,); scores >= model.score_threshold
    results = detect_batch(model, [image, image])    # list of (boxes, scores), one per image

Modules: ``model`` (network factory), ``data`` (samples, augmentation), ``metrics`` (matching,
AP), ``baseline`` (Otsu + connected components; nuclei), ``train``, ``evaluate``, ``api``,
``cli`` (``chromoseg train detector``, ``chromoseg eval detector``, ``chromoseg detect``).
"""
