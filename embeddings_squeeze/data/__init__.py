"""Datasets (``oxford_pet``, ``voc``, ``folder``, found by name in ``registry``), what they share
(``segmentation``), label mapping (``labels``) and synthetic data (``synthetic``)."""
