"""A target naming a Ray node resource is timed on that node, and the fingerprint says which."""

from __future__ import annotations

import dataclasses

import pytest

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def two_node_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"trainer": 1}, "include_dashboard": False},
    )
    edge = cluster.add_node(num_cpus=1, resources={"edge_x86": 1})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, edge
    ray.shutdown()
    cluster.shutdown()


def test_trial_is_timed_on_the_node_with_the_resource(two_node_cluster, tiny_task) -> None:
    from autocompress.errors import UnsupportedPlanError
    from autocompress.plan import CompressionPlan
    from autocompress.worker._trial import run_trial

    _, edge = two_node_cluster
    target = dataclasses.replace(tiny_task.target, node_resources={"edge_x86": 1.0})
    task = dataclasses.replace(tiny_task, target=target)
    names = ["stem.0", "layer1.0.conv1", "fc"]
    result = ray.get(
        ray.remote(num_cpus=1, resources={"trainer": 1})(run_trial).remote(
            CompressionPlan.uniform(names, weight_bits=8).to_dict(), task.to_dict()
        )
    ).result
    assert result.fingerprint["node"] == edge.node_id
    assert result.fingerprint["node_resources"] == {"edge_x86": 1.0}
    assert result.latency_ms > 0

    missing = dataclasses.replace(
        tiny_task, target=dataclasses.replace(tiny_task.target, node_resources={"arm_board": 1.0})
    )
    with pytest.raises(UnsupportedPlanError, match="match no live Ray node"):
        run_trial(CompressionPlan.uniform(names, weight_bits=8).to_dict(), missing.to_dict())
