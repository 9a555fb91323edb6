"""The mutating admission webhook: validates GPU-slice pods, fills defaults, guards internals.

:mod:`~kantaloupe.webhook.mutation` decides (pure); :mod:`~kantaloupe.webhook.review` is the
AdmissionReview codec; :mod:`~kantaloupe.webhook.server` is the HTTP face;
:mod:`~kantaloupe.webhook.command` wires ``kantaloupe webhook``.
"""
