"""geep-deploy: early-exit BERT with GPU-efficient exit prediction (GEEP), from training to deployment.

Importing this package imports neither torch, onnxruntime, tensorrt nor cupy; each module imports what it needs.
"""

__version__ = "0.1.0"
