"""The store policy's answer for a target driven directly (not through fanout): what `grants.authorize_target`
gives a target without `storeRef`, attached to its TargetContext. Raises `PolicyDeniedError` like fanout does."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from vaultbundle import stores
from vaultbundle.targets.base import TargetContext


def with_grant(context: TargetContext, kind: str, raw: Mapping[str, Any]) -> TargetContext:
    owner = context.owner
    grant = stores.authorize(kind, raw, None, namespace=owner.namespace, labels={}, vb_name=owner.name)
    return dataclasses.replace(context, grant=grant)
