"""The fixed parts of the scoring API (docs/CONTRACTS.md, section 4) that both of its halves use: the
front in scorer.api, which answers the probes and plain requests, and FastAPI's routes in
scorer.routes, which validate and document everything. Neither half imports the other's module
for them."""

ROUTE_ONE = "/recommendations/{user_id}"
ROUTE_BATCH = "/recommendations"
DEFAULT_K = 10
MAX_K = 1000  # k outside 1..MAX_K is a 422
ALIVE = {"status": "alive"}  # the /healthz body
MAX_EXCLUDE = 100  # most item ids one request may exclude (its `exclude`) ...
MAX_EXCLUDE_ID = 256  # ... each at most this many characters
ROUTE_FEEDBACK = "/feedback"
