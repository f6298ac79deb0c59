"""Datasets: ImageNet / ImageNet-100 preparation, the embedded generated dataset, loaders.

Modules: ``imagenet`` (``dwnas data prepare``), ``labels`` (ILSVRC2012 label files), ``verify``
(parallel image checks), ``synth`` (``dwnas data synth``), ``pack`` (the packed copy),
``manifest`` (reading a prepared directory), ``loaders`` (training and evaluation DataLoaders),
``learnability`` (CNN-vs-linear check of the generated data). See docs/data.md.
"""
