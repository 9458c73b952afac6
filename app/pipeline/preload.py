"""Imported once by multiprocessing's fork server before it forks generation processes, so each one
(at start, after a model switch or a crash) begins with torch and diffusers already imported: the
imports take seconds, paid once per server instead of once per process.
"""
import torch  # noqa: F401
from diffusers import AutoPipelineForText2Image, DiffusionPipeline  # noqa: F401

from . import process  # noqa: F401
