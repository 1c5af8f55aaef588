"""vaultbundle: verify vsync secret bundles from S3 and fan them out to Kubernetes and external stores."""

__version__ = "0.1.0"
