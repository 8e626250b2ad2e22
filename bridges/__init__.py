"""JAX <-> PyTorch bridges: boards to model inputs, responses to rewards.

Every module here that renders boards imports ``renderers`` (each game's renderer registers
itself then; the game layer never imports the layer above it). The package itself imports
nothing, so a command line read through ``bridges.cli`` loads no JAX.
"""
