"""What methods and tasks both stand on: the encoder and the model pool, weight digests, typed settings, code
versions, atomic writes and the error types. It imports nothing from the packages above it."""
