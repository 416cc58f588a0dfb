"""The HTTP API and web page (FastAPI), over the facade: ``retrieval serve``."""
