"""The init container of a release's scoring pod: `python -m waiter` exits 0 only when the model
folder is complete, every checksum verifies and the quality gate holds (apps/waiter/README.md).
Standard library and modelshare only, so the image stays small and starts fast."""
