"""The scoring service of a release: `python -m scorer` serves the model in MODELFOLDER over HTTP
(docs/CONTRACTS.md: section 4 the API, section 2 the environment; behaviour in apps/scorer/README.md)."""
