"""Pure crypto core: no I/O, no logging, no network. Byte-compatible with vsync (spec/vsync-format.md)."""
