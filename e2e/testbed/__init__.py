"""The local test bed: real servers (kube-apiserver + etcd + kube-controller-manager, moto, OpenBao, ...)
on random loopback ports, no Docker. CLI: ``python -m e2e.testbed up|down|status`` from the repo root;
Python API: :class:`e2e.testbed.bed.TestBed`.

Kept free of imports so that the small servers in this package start fast.
"""
