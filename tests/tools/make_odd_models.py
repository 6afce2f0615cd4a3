"""Write tiny float TFLite models that are NOT what edgecls runs, for the hostile-input tests:
each is a real converter output, so the runtime sees exactly what a user would hand it.
usage: make_odd_models.py OUT_DIR   (writes NAME.tflite for every NAME below)"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

tf.random.set_seed(0)
W = tf.random.normal((3, 5), seed=1)  # a 3 -> 5 dense layer on the mean colour
E = tf.random.normal((100, 4), seed=2)


def head(x):  # [1, h, w, 3] -> 5 softmax scores
    return tf.nn.softmax(tf.matmul(tf.reduce_mean(x, axis=[1, 2]), W))


def spec(shape, dtype=tf.float32):
    return [tf.TensorSpec(shape, dtype)]


MODELS = {
    # a classifier exported without a fixed size: [1, ?, ?, 3]
    "dynamic_input": (lambda x: head(x), spec([1, None, None, 3])),
    # an input of 20000 x 20000 x 3 float32: 4.5 GiB before anything runs
    "huge_input": (lambda x: head(x), spec([1, 20000, 20000, 3])),
    # token ids in: a text model
    "int32_input": (lambda x: tf.nn.softmax(tf.matmul(tf.reduce_mean(tf.gather(E, x), axis=1), tf.ones((4, 5)))),
                    spec([1, 16], tf.int32)),
    # the class index out instead of the scores
    "argmax_output": (lambda x: tf.argmax(head(x), axis=-1, output_type=tf.int32), spec([1, 32, 32, 3])),
    # one number out: a regression
    "scalar_output": (lambda x: tf.reduce_mean(x, axis=[1, 2, 3]), spec([1, 32, 32, 3])),
    # feature vectors out: an embedder
    "embedder": (lambda x: tf.math.l2_normalize(tf.matmul(tf.reduce_mean(x, axis=[1, 2]), tf.random.normal((3, 64), seed=3)),
                                                axis=-1), spec([1, 32, 32, 3])),
    # a feature map out: a backbone without its head
    "feature_map": (lambda x: tf.nn.relu(x * 2.0 - 1.0), spec([1, 32, 32, 3])),
}


def main(out_dir: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    for name, (fn, sig) in MODELS.items():
        concrete = tf.function(fn, input_signature=sig).get_concrete_function()
        data = tf.lite.TFLiteConverter.from_concrete_functions([concrete]).convert()
        tmp = os.path.join(out_dir, name + ".tflite.part")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(out_dir, name + ".tflite"))


if __name__ == "__main__":
    main(sys.argv[1])
