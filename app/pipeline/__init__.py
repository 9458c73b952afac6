"""Everything that runs in the generation process (process.py and what it imports: the generator,
loading, schedulers, previews, PNG files) and the server's handle on that process (client.py,
messages.py, entry.py). values.py, sources.py and progress_sink.py are the parts the server may use too:
they need no torch. Nothing here imports the engine, the web server or the studio.
"""
