"""The real control plane, started once per session and only when a test asks for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from kubernetes_asyncio import client as k8s

from kantaloupe.testing import Binaries, BinariesNotFoundError, ControlPlane, cluster, find_binaries


@pytest.fixture(scope="session")
def control_plane_binaries() -> Binaries:
    """The pinned binaries. Fails (not skips) when missing: `make controlplane` builds them."""
    try:
        return find_binaries()
    except BinariesNotFoundError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def control_plane(control_plane_binaries: Binaries) -> Iterator[ControlPlane]:
    """etcd + kube-apiserver + kube-scheduler on 127.0.0.1 for the whole session."""
    with ControlPlane(binaries=control_plane_binaries) as plane:
        yield plane
        plane.check_running()


@pytest.fixture
async def kube_api(control_plane: ControlPlane) -> AsyncIterator[k8s.ApiClient]:
    """An admin ``kubernetes_asyncio`` client on the test's own event loop."""
    async with cluster.api_client(control_plane.admin_kubeconfig) as api:
        yield api


@pytest.fixture
async def namespace(kube_api: k8s.ApiClient) -> AsyncIterator[str]:
    """A fresh namespace with its default ServiceAccount, deleted (pods first) afterwards."""
    name = await cluster.create_namespace(kube_api)
    yield name
    await cluster.delete_namespace(kube_api, name)
