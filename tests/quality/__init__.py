"""Accuracy and rates, measured over hundreds of images against the figures the docs state."""
