"""Write a small float32 TFLite classifier (MobileNetV2 0.35, 96 px, 5 classes, seeded random
weights with spread-out BatchNorm statistics) for tests of float paths such as the GPU backend.
usage: make_float_model.py OUT.tflite"""

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.random.set_seed(0)
rng = np.random.default_rng(0)
model = tf.keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=5)
for layer in model.layers:
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        g, b, mu, var = layer.get_weights()
        layer.set_weights([rng.uniform(0.5, 1.5, g.shape).astype("float32"), rng.uniform(-0.2, 0.2, b.shape).astype("float32"),
                           rng.uniform(-0.1, 0.1, mu.shape).astype("float32"), rng.uniform(0.5, 1.5, var.shape).astype("float32")])
with tempfile.TemporaryDirectory() as d:
    model.export(d, verbose=False)
    data = tf.lite.TFLiteConverter.from_saved_model(d).convert()
tmp = sys.argv[1] + ".part"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, sys.argv[1])
