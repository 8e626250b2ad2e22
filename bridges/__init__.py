"""JAX <-> PyTorch bridges: boards to model inputs, responses to rewards."""
