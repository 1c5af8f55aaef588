"""dotsec `.sec` reader (spec/dotsec-format.md, dotsec 7.0.1 / format v3): pure, no I/O, like `crypto/`.

    values, report = dotsec.open(text, AgeIdentity.from_key_file(key_text), schema_text)

The DEK comes from an injected `KeyUnwrapper` (an `AgeIdentity` here, `vaultbundle.dotsec_kms.KmsUnwrapper`
for AWS KMS), so this package never touches the network or the filesystem.
"""

from .keys import AgeIdentity, KeyUnwrapper
from .reader import PlaintextPolicy, Report, Values, open_sec, validate_structure
from .rules import Finding, check_values
from .schema import Schema, parse_schema

open = open_sec  # the reader's entry point as a reconcile calls it: dotsec.open(text, key, schema)

__all__ = [
    "AgeIdentity",
    "Finding",
    "KeyUnwrapper",
    "PlaintextPolicy",
    "Report",
    "Schema",
    "Values",
    "check_values",
    "open",
    "open_sec",
    "parse_schema",
    "validate_structure",
]
