"""Serve any jaxgym game as an OpenEnv environment: ``python -m bridges.serve --game G``.

``bridges.serve.engine`` (the batching engine) needs only JAX; ``bridges.serve.app`` (the
OpenEnv models and app) needs ``pip install -e ".[serve]"`` and is imported only when serving.
"""
