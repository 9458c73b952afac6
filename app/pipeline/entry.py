"""The generation process's entry point. The server names it as the target of the process it starts
without importing the pipeline code itself (torch, diffusers); those imports happen in the child.
"""
from __future__ import annotations

from typing import Any


def main(connection: Any, spec: Any) -> None:
    from .process import serve

    serve(connection, spec)
