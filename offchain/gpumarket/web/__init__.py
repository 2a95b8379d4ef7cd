"""The one web stack of the off-chain services: the ASGI server side (Starlette apps served by
uvicorn, one JSON error envelope) and the one HTTP client (httpx) that every caller uses."""
