"""What train.py uses: the data, augmentation, the loop, calibration, outliers, redrawing and the report."""
