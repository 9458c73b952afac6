"""The websocket guide's import path for the generator: `from app.generator import ArtworkGenerator`.
It lives in app/pipeline/generator.py."""
from .pipeline.generator import ArtworkGenerator, GenerationCancelledError

__all__ = ["ArtworkGenerator", "GenerationCancelledError"]
