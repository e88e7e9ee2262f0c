"""A web dashboard for Conveyor: every queue, any job, and the dead-letter queue to operate.

``create_app(...)`` returns a Starlette app; ``conveyor dashboard`` serves one with uvicorn,
or mount it in your own Starlette/FastAPI app. See docs/dashboard.md.
"""

from conveyor.dashboard.app import create_app

__all__ = ["create_app"]
