"""The server: wiring the engine into NiceGUI's FastAPI app (server.py), REST (api.py), /ws
(websocket.py) and how its messages reach each socket (delivery.py, eager.py)."""
