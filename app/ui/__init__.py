"""The NiceGUI studio: pages (pages.py) and the bindable job state they show (live_jobs.py); the widgets
are in the top-level `components/` package."""
