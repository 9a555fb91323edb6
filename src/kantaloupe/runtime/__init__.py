"""Serving pieces every Kantaloupe server shares (extender, webhook, node agent).

- :mod:`.lifecycle`: :func:`~.lifecycle.run_process` (one loop, SIGTERM/SIGINT, drain, exit
  code), :class:`~.lifecycle.Lifecycle`, :func:`~.lifecycle.serve`.
- :mod:`.tasks`: :class:`~.tasks.TaskGuard` (named tasks, failures logged, root tasks).
- :mod:`.probes`: :func:`~.probes.build_app` (``/healthz``, ``/readyz``, ``/metrics``).
- :mod:`.tls`: :func:`~.tls.server_context` from cert and key files.
- :mod:`.logs`: :func:`~.logs.setup_logging` (one JSON object per line).
"""
