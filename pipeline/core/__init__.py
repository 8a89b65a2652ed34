"""chromoseg's core: what every stage needs and nothing above it.

Layers, each importing only the ones below it (``tests/test_layers.py`` reads the imports):

1. ``pipeline.core``: errors, image IO, the ADIR format and split, atomic writers, model
   folders, device choice, the training engine, matching and its counts, configs;
2. the stages, ``detector`` and ``segmenter``: their models, data, training and evaluation;
3. the pipeline (``pipeline.*`` outside the core): the whole job on the stages' APIs;
4. the command line (``pipeline.cli``, ``pipeline.run_cli``, ``detector.cli``,
   ``segmenter.cli``).
"""
