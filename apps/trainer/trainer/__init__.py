"""The training job: reads interaction CSVs, selects and fits a recommender, writes a release
folder (DESIGN.md Contract 1). Run with ``python -m trainer``; configuration in README.md."""
