"""Reusable NiceGUI pieces of the studio. They reach the engine only through its public objects."""
from .gallery import Gallery
from .image_dialog import ImageDialog
from .job_card import job_card
from .job_list import JobList
from .model_picker import ModelPicker, SwitchOutcome
from .prompt_form import FormServices, PromptForm
from .sizes import size_presets
from .studio_header import studio_header

__all__ = [
    "FormServices", "Gallery", "ImageDialog", "JobList", "ModelPicker", "PromptForm", "SwitchOutcome", "job_card",
    "size_presets", "studio_header",
]
