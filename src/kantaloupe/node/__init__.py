"""The node agent: GPU discovery, registration, the kubelet device plugin and the monitor.

- :mod:`.devices`: what GPUs exist (NVML or an inventory file) and their health.
- :mod:`.config`: the per-node configuration file.
- :mod:`.registration`: the node's registration annotation, capacity and heartbeat Lease.
- :mod:`.plugin`: the kubelet device plugin (gRPC), Allocate's env and mounts.
- :mod:`.handoff`: the agent's side of the bind hand-off.
- :mod:`.library`, :mod:`.statedir`: the isolation library and per-container state on the host.
- :mod:`.monitor`: the Prometheus exporter.
- :mod:`.command`, :mod:`.agent`: ``kantaloupe node-agent``.
"""
