"""The Kubernetes adapter: the only code that talks to the API server.

- :mod:`.client`: :class:`~.client.KubeClient` (raw JSON, list, watch, patch, bind), paths.
- :mod:`.objects`: slim ``msgspec`` views of Pods, Nodes, Leases.
- :mod:`.errors`: the API server's answers as Kantaloupe errors.
- :mod:`.watching`: :class:`~.watching.Informer` (list+watch cache, relist on 410).
- :mod:`.events`: :class:`~.events.EventRecorder` (deduplicated Events).
- :mod:`.election`: :class:`~.election.LeaderElector` and Lease helpers.
"""
