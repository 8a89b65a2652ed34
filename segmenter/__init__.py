"""chromoseg segmenter: the overlap U-Net that separates chromosomes on 88x88 cluster crops
(0 background, 1 chromosome A, 2 chromosome B, 3 overlap)."""
