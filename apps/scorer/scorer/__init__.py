"""The scoring service of a release: `python -m scorer` serves the model in MODELFOLDER over HTTP
(DESIGN.md Contract 4). See apps/scorer/README.md for its environment and behaviour."""
