"""Serving: a reference HTTP service (FastAPI + uvicorn) with request pooling, and its Ray Serve deployment.

App layer: imports ``runtime`` (``GeepEngine``) and ``geep_deploy.errors``; nothing in the core, ``engines``,
``runtime`` or ``export`` imports it. FastAPI and uvicorn come with the ``service`` extra, Ray Serve with ``serve``.
Modules: ``pooling`` (pure request pooling), ``limits`` (request checks), ``runner`` (one pool on the engine),
``batcher`` (asyncio micro-batcher), ``metrics``/``telemetry`` (Prometheus), ``middleware``, ``schema``, ``app``
(routes, `LocalService`), ``ray_app`` (Ray Serve deployment).
"""
