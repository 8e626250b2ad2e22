"""JAX <-> PyTorch bridges: boards to model inputs, responses to rewards."""

# Every game's renderer registers itself when ``renderers`` is imported (the game layer never
# imports it); the bridges render boards, so any use of them has the renderers registered.
import renderers  # noqa: F401
