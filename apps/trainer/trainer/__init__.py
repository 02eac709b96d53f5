"""The training job: reads interaction CSVs, selects and fits a recommender, writes a release
folder (docs/CONTRACTS.md: section 1 the folder, section 2 the environment). ``python -m trainer``."""
