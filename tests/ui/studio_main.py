"""The studio as the NiceGUI `User` simulation runs it: the real `app.web.server.build`, settings from AI_ARTIST_* env."""
from __future__ import annotations

from nicegui import ui

from app.config import load_config
from app.web.server import build

settings = load_config()
build(settings)
ui.run(title=settings.server.title, reload=False, show=False, dark=None, show_welcome_message=False)
