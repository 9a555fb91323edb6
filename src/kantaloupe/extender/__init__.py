"""``kantaloupe scheduler``: the kube-scheduler extender (filter, bind, prioritize).

- :mod:`.command`: flags, env, config file → :class:`.settings.Settings`, then run.
- :mod:`.wire`: the extender protocol's bodies (any key casing in, PascalCase out).
- :mod:`.state`: watch-fed cluster state: nodes, agent leases, pods → the ledger; hand-offs.
- :mod:`.service`: filter, bind, reservation expiry (parse → core → write).
- :mod:`.metrics`: HAMi's allocation gauges (scrape time) and our latency/counter series.
- :mod:`.server`: the aiohttp routes; :mod:`.process`: wiring for one process.
"""
