"""Hypothesis strategies for the core's inputs."""

from __future__ import annotations

from hypothesis import strategies as st

from kantaloupe.scheduling.requests import ContainerRequest, PodRequest

MODELS = ["NVIDIA GeForce RTX 4090", "NVIDIA GeForce RTX 4070", "NVIDIA A100-SXM4-80GB"]


@st.composite
def container_requests(draw: st.DrawFn, max_count: int = 3) -> ContainerRequest:
    by_percent = draw(st.booleans())
    return ContainerRequest(
        name="c",
        count=draw(st.integers(1, max_count)),
        memory_mib=0 if by_percent else draw(st.integers(1, 30000)),
        memory_percent=draw(st.integers(1, 100)) if by_percent else 0,
        cores=draw(st.sampled_from([0, 10, 25, 50, 100])),
    )


@st.composite
def pod_requests(draw: st.DrawFn, uid: str) -> PodRequest:
    containers = tuple(draw(st.lists(container_requests(), min_size=1, max_size=3)))
    return PodRequest(
        uid=uid,  # type: ignore[arg-type]
        containers=containers,
        names=tuple(f"c{i}" for i in range(len(containers))),
        init_count=0,
    )
