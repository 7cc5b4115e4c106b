# The ComfyUI version this stand-in models (commit a125cd84).
__version__ = "0.3.64"
