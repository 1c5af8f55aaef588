"""End-to-end test support for vaultbundle: the local test bed of real servers (see e2e/testbed)."""
