"""SVFormer models, the registry of named variants, and loading of the authors' weights."""
from . import zoo  # noqa: F401  (registers the named models)
from .official import load_official, official_to_svformer_key, svformer_to_official_key
from .registry import create_model, list_models, register_model
from .streaming import StreamingSVFormer
from .svformer import SVFormer

__all__ = ["SVFormer", "create_model", "list_models", "load_official", "official_to_svformer_key",
           "register_model", "svformer_to_official_key", "StreamingSVFormer"]
