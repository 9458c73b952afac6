"""Imported once by multiprocessing's fork server before it forks generation processes, so each one
(at start, after a model switch or a crash) begins with torch and diffusers already imported: the
imports take seconds, paid once per server instead of once per process. What they print goes to the
log file (app/pipeline/entry.py).
"""
import os

from .entry import LOG_FILE_VARIABLE, send_output_to

send_output_to(os.environ.get(LOG_FILE_VARIABLE))

import torch  # noqa: E402, F401
from diffusers import AutoPipelineForText2Image, DiffusionPipeline  # noqa: E402, F401

from . import process  # noqa: E402, F401
