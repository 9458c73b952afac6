"""Imported once by multiprocessing's fork server before it forks generation processes, so each one
(at start, after a model switch or a crash) begins with torch and diffusers already imported: about
13 s of imports on a 2-core machine, paid once per server instead of once per process.
"""
import torch  # noqa: F401
from diffusers import AutoPipelineForText2Image, DiffusionPipeline  # noqa: F401

from . import pipeline_process  # noqa: F401
