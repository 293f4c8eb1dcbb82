"""llama.cpp's server API, the part llmd serves: ``/tokenize``, ``/detokenize``, ``/apply-template``."""

from llmd.http.llama_server.routes import build

__all__ = ["build"]
