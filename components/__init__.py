"""The Pulumi program's parts: typed stack settings and one ComponentResource per concern.

See components/README.md for the config keys and how a release is declared and kept.
"""
