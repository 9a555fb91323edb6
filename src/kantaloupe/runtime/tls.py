"""TLS for our servers: a server context from PEM files, checked with a useful error."""

from __future__ import annotations

import ssl
from pathlib import Path

from kantaloupe.api.errors import InvalidConfigError


def server_context(
    cert_file: str | Path, key_file: str | Path, *, client_ca_file: str | Path | None = None
) -> ssl.SSLContext:
    """A TLS 1.2+ server context; ``client_ca_file`` also requires client certificates."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except (OSError, ssl.SSLError) as e:
        raise InvalidConfigError(
            "tls-cert-file/tls-key-file",
            f"{cert_file}, {key_file}",
            f"cannot be loaded ({e})",
            "give a readable PEM certificate and its matching private key",
        ) from e
    if client_ca_file:
        try:
            ctx.load_verify_locations(str(client_ca_file))
        except (OSError, ssl.SSLError) as e:
            raise InvalidConfigError(
                "tls-client-ca-file",
                str(client_ca_file),
                f"cannot be loaded ({e})",
                "give a readable PEM CA bundle",
            ) from e
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx
