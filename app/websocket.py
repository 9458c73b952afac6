"""The websocket guide's import path for the connection manager: `from app.websocket import manager`.
It lives in app/web/websocket.py."""
from .web.websocket import ConnectionManager, manager

__all__ = ["ConnectionManager", "manager"]
