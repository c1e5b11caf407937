"""The model at work: its weights, the Predictor, whole numbers and explanations."""
