"""A real local Kubernetes control plane for tests and the dev playground.

`binaries` finds or builds the programs, `pki` makes the keys, `cluster` runs the
processes, `install` puts the CRDs in. `WEBHOOK_OPERATOR_TEST_KUBECONFIG` (used by the test
fixtures) points at an existing cluster instead.
"""

from webhook_operator.devcluster.binaries import BinaryError, ControlPlaneBinaries, resolve
from webhook_operator.devcluster.cluster import ClusterInfo, ClusterStartError, LocalCluster
from webhook_operator.devcluster.install import install_crds

__all__ = [
    "BinaryError",
    "ClusterInfo",
    "ClusterStartError",
    "ControlPlaneBinaries",
    "LocalCluster",
    "install_crds",
    "resolve",
]
