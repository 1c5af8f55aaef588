"""An in-memory kit for the Kubernetes and S3 seams (`KubeAPI`, `ObjectStore`), typed against the Protocols.

mypy checks these classes against the product's Protocols (`make lint` type-checks tests/kit), so a signature
change in `Kube` or `S3Objects` breaks the unit tests at once, not only the slow e2e tests.
"""

from tests.kit.kube import MemoryKube
from tests.kit.s3 import MemoryObjects
from tests.kit.world import CONFIG, PASSPHRASE, DotsecWorld, World, add_source_secrets

__all__ = ["CONFIG", "PASSPHRASE", "DotsecWorld", "MemoryKube", "MemoryObjects", "World", "add_source_secrets"]
