"""embeddings_squeeze: segmentation quality lost when frozen embeddings pass a VQ bottleneck."""

__version__ = "0.1.0"
PROGRAM = "embeddings-squeeze"  # the command people type
