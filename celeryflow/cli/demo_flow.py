"""The demo scenario: boot a VM (allocate network, create volume, boot server, attach volume).

Each step can be compensated; the attach step fails on demand so the demo can
show the compensation running in reverse order.
"""

from __future__ import annotations

import time
from typing import Any

from celeryflow import registry, task
from celeryflow.patterns import graph_flow, linear_flow

STEP_SECONDS = 0.3


class VolumeAttachError(RuntimeError):
    """The hypervisor refused to attach the volume (the demo's injected failure)."""


class AllocateNetwork(task.Task):
    default_provides = "network_id"

    def execute(self, vm_name: str) -> str:
        time.sleep(STEP_SECONDS)
        return f"net-{vm_name}"

    def revert(self, vm_name: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        time.sleep(STEP_SECONDS)


class CreateVolume(task.Task):
    default_provides = "volume_id"

    def execute(self, vm_name: str, size_gb: int = 10) -> str:
        time.sleep(STEP_SECONDS)
        return f"vol-{vm_name}-{size_gb}g"

    def revert(self, vm_name: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        time.sleep(STEP_SECONDS)


class BootServer(task.Task):
    default_provides = "server_id"

    def execute(self, vm_name: str, network_id: str) -> str:
        time.sleep(STEP_SECONDS)
        return f"srv-{vm_name}"

    def revert(self, vm_name: str, network_id: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        time.sleep(STEP_SECONDS)


class AttachVolume(task.Task):
    default_provides = "attachment"

    def execute(self, server_id: str, volume_id: str, fail_attach: bool = False) -> str:
        time.sleep(STEP_SECONDS)
        if fail_attach:
            raise VolumeAttachError(f"cannot attach {volume_id} to {server_id}: hypervisor busy")
        return f"{server_id}:{volume_id}"

    def revert(self, server_id: str, volume_id: str, result: Any, flow_failures: Any, **kwargs: Any) -> None:
        time.sleep(STEP_SECONDS)


@registry.register
def boot_vm_flow() -> linear_flow.Flow:
    """Network and volume in parallel, then boot, then attach."""
    prepare = graph_flow.Flow("prepare").add(AllocateNetwork("allocate_network"), CreateVolume("create_volume"))
    return linear_flow.Flow("boot-vm").add(prepare, BootServer("boot_server"), AttachVolume("attach_volume"))
