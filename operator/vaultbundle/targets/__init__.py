"""Targets: where a verified bundle's secrets go. One module per store, one `Target` protocol."""
