"""``make image``: build the operator image from the root Dockerfile (buildah, on the local Debian base) and load
it into the node's containerd when the node runs. The archive stays in the cache, so the next ``up --node``
imports it again without a rebuild."""

from __future__ import annotations

import os

from .bed import TestBed
from .config import BUILD_SCRIPTS, REPO_ROOT
from .node import ensure_node_artifacts, image_archive, import_image, operator_image
from .node_config import NodeLayout
from .node_progress import run_step
from .processes import is_ours


def build_and_load(bed: TestBed) -> None:
    logs = bed.layout.logs
    ensure_node_artifacts(bed.binaries, logs, bed.say)  # buildah and debootstrap come with the node's packages
    archive = image_archive(bed.binaries)
    env = dict(os.environ, VAULTBUNDLE_TESTBED_CACHE=str(bed.binaries.cache))
    argv = ["bash", str(BUILD_SCRIPTS / "build-image.sh"), str(REPO_ROOT), operator_image(), str(archive)]
    run_step(f"building {operator_image()} with buildah", argv, logs / "build-image.log", bed.say, env=env)
    containerd = next((r for r in bed.records() if r.name == "containerd"), None)
    if containerd is not None and is_ours(containerd):
        import_image(NodeLayout.of(bed.layout), archive, logs, bed.say)
    else:
        bed.say(f"the node is not running: {archive.name} is imported by the next `make testbed-up NODE=1`")
