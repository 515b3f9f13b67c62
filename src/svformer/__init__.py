"""svformer: SVFormer, a directly trained spiking video transformer (Yu et al., arXiv 2406.15034).

Data yields clips (B, C, T, H, W); the spiking core runs (T, B, ...); models convert once at their
boundary. See README.md and docs/architecture.md.
"""
from .models import StreamingSVFormer, SVFormer, create_model, list_models, load_official, register_model

__version__ = "0.1.0"

__all__ = ["StreamingSVFormer", "SVFormer", "create_model", "list_models", "load_official", "register_model", "__version__"]
