"""An upload's bytes to MNIST-style 28×28 inputs. Knows nothing of the model, the service or training."""
