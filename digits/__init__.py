"""The digit service's package: one subpackage per room.

    imaging/    an upload's bytes to MNIST-style 28×28 inputs: formats and their costs, decoding, ink, the fit, PNG
    inference/  the weights, the Predictor, whole numbers (segment) and explanations
    feedback/   corrections from users: signed prediction ids, the store, the operators' review
    service/    the web service: config, uploads, answers, errors, routes, middleware, metrics
    training/   what train.py uses: data, augmentation, the loop, calibration, outliers, redrawing, the report

Layers, lowest first: imaging, inference, then feedback, service and training; none imports a higher one.
"""
