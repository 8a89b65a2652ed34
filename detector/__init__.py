"""chromoseg detector: boxes around chromosome clusters in whole metaphase images
(torchvision Faster R-CNN)."""
